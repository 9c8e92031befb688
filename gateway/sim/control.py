"""Runtime control of a running simulation from another process: JSON lines over TCP.

One JSON object per line in, one per line out, on 127.0.0.1:

    {"cmd": "set", "point": "room1_th.temperature", "signal": {"kind": "ramp", "start": 23,
     "end": 60, "duration": 30}}                      (a bare value means a constant)
    {"cmd": "fault", "device": "pdu1", "mode": "slow_reply", "delay": 2}
    {"cmd": "get", "point": "room1_th.temperature"}
    {"cmd": "hold", "point": "..."}   {"cmd": "release", "point": "..."}
    {"cmd": "list"}

Answers are `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Commands are parsed by
pydantic models at the boundary; malformed input (not JSON, unknown command, bad signal,
unknown point, an over-long line) gets an error line and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from gateway.sim.faults import Fault
from gateway.sim.signals import Signal, Value, parse_signal
from gateway.strict import StrictModel

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024


class SimControl(Protocol):
    """What the control channel drives (a SimulatedSite)."""

    def points(self) -> list[str]: ...
    def devices(self) -> list[str]: ...
    def set_signal(self, point_id: str, signal: Signal) -> None: ...
    def hold(self, point_id: str) -> Value: ...
    def release(self, point_id: str) -> None: ...
    def set_fault(self, device_id: str, fault: Fault) -> None: ...
    def fault(self, device_id: str) -> Fault: ...
    def value(self, point_id: str) -> Value: ...
    def read_point(self, point_id: str) -> Value: ...


class _Command(StrictModel):
    """A control-port command: unknown keys are errors."""


class SetCommand(_Command):
    cmd: Literal["set"]
    point: str
    signal: Signal

    @field_validator("signal", mode="before")
    @classmethod
    def _bare_value(cls, value: Any) -> Any:
        return parse_signal(value) if isinstance(value, bool | int | float | str) else value


class FaultCommand(Fault):
    cmd: Literal["fault"]
    device: str

    def fault(self) -> Fault:
        return Fault.model_validate(self.model_dump(exclude={"cmd", "device"}))


class GetCommand(_Command):
    cmd: Literal["get"]
    point: str


class HoldCommand(_Command):
    cmd: Literal["hold"]
    point: str


class ReleaseCommand(_Command):
    cmd: Literal["release"]
    point: str


class ListCommand(_Command):
    cmd: Literal["list"]


Command = Annotated[
    SetCommand | FaultCommand | GetCommand | HoldCommand | ReleaseCommand | ListCommand,
    Field(discriminator="cmd"),
]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


def _json_value(value: Value) -> Value | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


def handle_line(target: SimControl, line: bytes) -> dict[str, Any]:
    """The answer to one request line (never raises for bad input)."""
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return {"ok": False, "error": f"not JSON: {exc}"}
    if not isinstance(data, dict):
        return {"ok": False, "error": "a command is a JSON object with a `cmd` key"}
    try:
        command = COMMAND_ADAPTER.validate_python(data)
    except ValidationError as exc:
        return {"ok": False, "error": f"bad command: {_validation_text(exc)}"}
    try:
        return _run(target, command)
    except KeyError as exc:
        return {"ok": False, "error": str(exc.args[0]) if exc.args else "unknown id"}
    except (ValueError, TypeError) as exc:
        return {"ok": False, "error": str(exc)}


def _run(target: SimControl, command: Command) -> dict[str, Any]:
    if isinstance(command, SetCommand):
        target.set_signal(command.point, command.signal)
        return {"ok": True, "point": command.point}
    if isinstance(command, FaultCommand):
        fault = command.fault()
        target.set_fault(command.device, fault)
        return {"ok": True, "device": command.device, "fault": fault.model_dump(mode="json")}
    if isinstance(command, GetCommand):
        return {"ok": True, "point": command.point,
                "value": _json_value(target.value(command.point)),
                "read": _json_value(target.read_point(command.point))}
    if isinstance(command, HoldCommand):
        return {"ok": True, "point": command.point,
                "value": _json_value(target.hold(command.point))}
    if isinstance(command, ReleaseCommand):
        target.release(command.point)
        return {"ok": True, "point": command.point}
    return {"ok": True, "points": target.points(),
            "devices": {d: target.fault(d).mode.value for d in target.devices()}}


class ControlServer:
    """The JSON-lines control server; `port` is known after `start()`."""

    def __init__(self, target: SimControl, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("control server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port,
                                                  limit=MAX_LINE)
        log.info("sim_control_listening host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._clients):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE; the stream drops it
                    answer: dict[str, Any] = {"ok": False,
                                              "error": f"line longer than {MAX_LINE} bytes"}
                else:
                    if not line:
                        break
                    if not line.strip():
                        continue
                    answer = handle_line(self.target, line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
