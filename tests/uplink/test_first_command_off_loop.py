"""The first operator command does not hold the event loop (issue 15, DESIGN principle 13): the
contract's models the command inbox decodes it with (pydantic: 0.1-0.3 s to import here, more
on a Pi) are not imported by a gateway at rest, and at the first `cmd` message they are
imported in paho's network thread (`Handlers.prepare`, gateway.operator.inbox.prepare_commands)
before the message goes to the loop — not on the loop the sirens run on. A real `Uplink` in a
fresh interpreter, a real Mosquitto; the command is sent and its result read by this test."""

from __future__ import annotations

import asyncio
import pickle
import time
from pathlib import Path

from gateway.contract.wire import CommandResult, RequestState, decode, encode
from gateway.uplink.settings import OutboxSettings, UplinkSettings
from tests.helpers import PROBE_UNTIL, import_threads_probe
from tests.ops.test_lazy_imports import run_fresh
from tests.uplink.conftest import Broker, Subscriber

SITE, GW = "site-1", "gw-1"
CMD = f"roomwarden/{SITE}/{GW}/cmd"

MODELS = ("gateway.contract.codec", "gateway.contract.commands")

PROBE = import_threads_probe(MODELS) + """
    import asyncio, json, os, pickle, sys, time
    from pathlib import Path

    MODELS = ("gateway.contract.codec", "gateway.contract.commands")

    from gateway.clock import SystemClock
    from gateway.uplink.publisher import Uplink

    tmp = Path(sys.argv[2])

""" + PROBE_UNTIL + """
    async def main():
        settings = pickle.loads((tmp / "uplink.pickle").read_bytes())  # as from the check
        uplink = Uplink(settings, "site-1", "gw-1", tmp / "state", SystemClock(), {})
        task = asyncio.create_task(uplink.run())
        await until(lambda: uplink.status().connected, "connected")
        at_rest = [m for m in MODELS if m in sys.modules]
        (tmp / "connected").touch()  # the test sends its command now
        await until(lambda: uplink._counts["received"] >= 1, "the command")
        await asyncio.sleep(1.0)  # its result published
        await uplink.close()
        task.cancel()
        print(json.dumps({"at_rest": at_rest, "on_main": on_main}))

    asyncio.run(main())
"""


async def test_the_first_command_s_models_are_imported_off_the_event_loop(
        broker: Broker, tmp_path: Path) -> None:
    settings = UplinkSettings(broker="127.0.0.1", port=broker.port, delivery="puback",
                              reconnect_min=0.1, reconnect_max=0.5,
                              outbox=OutboxSettings(commit_interval=0.2))
    (tmp_path / "uplink.pickle").write_bytes(pickle.dumps(settings))
    subscriber = Subscriber(broker.port, f"roomwarden/{SITE}/{GW}/cmd/result")
    try:
        assert await asyncio.to_thread(subscriber.subscribed.wait, 10)
        probe = asyncio.create_task(asyncio.to_thread(
            run_fresh, PROBE, tmp_path, {"PROBE_BROKER_PORT": str(broker.port)}))
        deadline = time.monotonic() + 60
        while not (tmp_path / "connected").exists():
            assert time.monotonic() < deadline and not probe.done(), "the probe's uplink"
            await asyncio.sleep(0.05)
        command = RequestState(id="rs-first", ts=time.time_ns(), actor="ingest",
                               action="request_state")
        await asyncio.to_thread(subscriber.client.publish(CMD, encode(command), qos=1)
                                .wait_for_publish, 10)
        found = await probe
        received = subscriber.snapshot()
    finally:
        subscriber.close()
    assert found["at_rest"] == []  # a gateway at rest holds none of them
    assert found["on_main"] == {"gateway.contract.codec": False,
                                "gateway.contract.commands": False}
    results = [decode(m.topic, m.payload) for m in received]
    assert [(r.id, r.ok) for r in results if isinstance(r, CommandResult)] == [("rs-first", True)]
