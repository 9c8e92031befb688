"""The JSON-lines control channel, driven over a real socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from gateway.sim.site import SimulatedSite


async def _call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                line: bytes | dict[str, Any]) -> dict[str, Any]:
    data = line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n"
    writer.write(data)
    await writer.drain()
    answer: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 2))
    return answer


async def test_control_sets_what_the_client_reads(site: SimulatedSite) -> None:
    port = await site.serve_control()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    host, modbus_port = site.endpoint("tcp1").rsplit(":", 1)
    client = AsyncModbusTcpClient(host, port=int(modbus_port), timeout=1, retries=0)
    await client.connect()
    try:
        answer = await _call(reader, writer, {"cmd": "set", "point": "meter.setpoint",
                                              "signal": {"kind": "constant", "value": 4321}})
        assert answer == {"ok": True, "point": "meter.setpoint"}
        assert (await client.read_holding_registers(210, device_id=1)).registers == [4321]
        assert (await _call(reader, writer, {"cmd": "set", "point": "meter.setpoint",
                                             "signal": 77}))["ok"]
        assert (await client.read_holding_registers(210, device_id=1)).registers == [77]

        answer = await _call(reader, writer, {"cmd": "get", "point": "meter.setpoint"})
        assert answer["ok"] and answer["value"] == 77 and answer["read"] == 77

        answer = await _call(reader, writer, {"cmd": "fault", "device": "meter",
                                              "mode": "exception", "exception_code": 6})
        assert answer["ok"] and answer["fault"]["mode"] == "exception"
        assert (await client.read_holding_registers(210, device_id=1)).exception_code == 6
        assert (await _call(reader, writer, {"cmd": "fault", "device": "meter",
                                             "mode": "none"}))["ok"]

        listing = await _call(reader, writer, {"cmd": "list"})
        assert "meter.setpoint" in listing["points"] and listing["devices"]["ups1"] == "none"
        assert (await _call(reader, writer, {"cmd": "hold", "point": "meter.temperature"}))["ok"]
        assert (await _call(reader, writer, {"cmd": "release",
                                             "point": "meter.temperature"}))["ok"]
    finally:
        client.close()
        writer.close()


async def test_control_survives_garbage(site: SimulatedSite) -> None:
    port = await site.serve_control()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        bad: list[bytes | dict[str, Any]] = [
            b"this is not json\n",
            b"\xff\xfe\x00\n",
            b"[1, 2]\n",
            {"cmd": "explode"},
            {"cmd": "set", "point": "meter.setpoint", "signal": {"kind": "warp"}},
            {"cmd": "set", "point": "nope.nothing", "signal": 1},
            {"cmd": "fault", "device": "meter", "mode": "slow_reply"},  # no delay
            {"cmd": "fault", "device": "ghost", "mode": "no_reply"},
            {"cmd": "get"},
            b"x" * 70_000 + b"\n",
        ]
        for line in bad:
            answer = await _call(reader, writer, line)
            assert answer["ok"] is False and answer["error"], line
        assert (await _call(reader, writer, {"cmd": "get", "point": "meter.setpoint"}))["ok"]
    finally:
        writer.close()
    # a client that vanishes mid-line does not hurt the server either
    _, rude = await asyncio.open_connection("127.0.0.1", port)
    rude.write(b'{"cmd": "li')
    rude.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert (await _call(reader, writer, {"cmd": "list"}))["ok"]
    finally:
        writer.close()
