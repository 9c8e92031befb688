"""The local control socket: how `roomwarden status` and `roomwarden config apply` talk to the
running gateway on the same machine.

A Unix stream socket (default `$RUNTIME_DIRECTORY/control.sock`, i.e. /run/roomwarden under
systemd, else `<state dir>/control.sock`), mode 0660: the file permissions are the
authentication (root and the `roomwarden` group). One JSON request per connection, one line:

    {"op": "status"}
    {"op": "apply", "config": "<YAML text>", "author": "alice"}     unsigned, local
    {"op": "apply", "envelope": {...}}                               a signed ConfigSet
    {"op": "reload"}                                                 like SIGHUP
    {"op": "incident", "action": "list"} / {..., "action": "get", "id": ...}   issue 12
    {"op": "drill", "action": "start" | "stop" | "status", ...}   issue 12: live drills
                                                     (gateway.drills.live_control)

Answers are JSON lines: `{"progress": ConfigStatus}` while an apply goes on, then one final
`{"ok": true|false, ...}`. Bad requests get `{"ok": false, "error": "..."}`; nothing a client
sends can stop the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from gateway.contract.wire import ConfigStatus

log = logging.getLogger("roomwarden.control")

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A config is at most 512 KiB; JSON escaping can double or triple it."""
MAX_CONNECTIONS = 8
"""Requests served at once; more are answered "busy" at once and closed (each may hold up to
MAX_REQUEST_BYTES while it is read: 150 clients took the gateway to 1.2 GB in the audit)."""
SOCKET_NAME = "control.sock"

StatusHandler = Callable[[], dict[str, Any]]
Progress = Callable[[ConfigStatus], None]
ApplyText = Callable[[str, str, Progress], Awaitable[ConfigStatus]]
ApplyEnvelope = Callable[[bytes, Progress], Awaitable[ConfigStatus]]
Reload = Callable[[], Awaitable[ConfigStatus | None]]
Incidents = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # issue 12
Drills = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # issue 12: live drills


class ControlError(RuntimeError):
    """The client could not talk to the gateway (not running, no permission, bad answer)."""


def default_socket_path(state_dir: Path) -> Path:
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / SOCKET_NAME
    return state_dir / SOCKET_NAME


class ControlServer:
    def __init__(self, path: Path, *, status: StatusHandler, apply_text: ApplyText,
                 apply_envelope: ApplyEnvelope, reload: Reload,
                 incidents: Incidents | None = None, drills: Drills | None = None) -> None:
        self.path = path
        self._incidents = incidents  # issue 12: {"op": "incident"} (gateway/recorder/remote.py)
        self._drills = drills  # issue 12: {"op": "drill"} (gateway/drills/live_control.py)
        self._status = status
        self._apply_text = apply_text
        self._apply_envelope = apply_envelope
        self._reload = reload
        self._server: asyncio.Server | None = None
        self._serving = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a process that died
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                       limit=MAX_REQUEST_BYTES)
        os.chmod(self.path, 0o660)
        log.info("event=control_listening path=%s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(obj: dict[str, Any]) -> None:
            writer.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
            await writer.drain()

        if self._serving >= MAX_CONNECTIONS:
            with contextlib.suppress(Exception):
                await send({"ok": False, "error": f"busy: {self._serving} requests are being "
                                                  "served; try again"})
            writer.close()
            return
        self._serving += 1
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), 30)
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("the request is not a JSON object")
                # text only: a lone surrogate (a JSON escape) is no character of any file
                json.dumps(request, ensure_ascii=False).encode()
            except RecursionError:
                await send({"ok": False, "error": "bad request: nested too deeply"})
                return
            except (ValueError, UnicodeError, asyncio.LimitOverrunError) as exc:
                await send({"ok": False, "error": f"bad request: {exc}"})
                return
            request["peer"] = peer_name(writer)  # who is asking, as the kernel says
            await self._handle(request, send)
        except (ConnectionError, TimeoutError):
            pass
        except Exception as exc:  # a bug here must not take the gateway down
            log.exception("event=control_request_failed")
            with contextlib.suppress(Exception):
                await send({"ok": False, "error": f"internal error: {exc!r}"})
        finally:
            self._serving -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, request: dict[str, Any],
                      send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        op = request.get("op")
        pending: list[asyncio.Task[None]] = []

        def progress(status: ConfigStatus) -> None:
            pending.append(asyncio.ensure_future(
                send({"progress": status.model_dump(mode="json", exclude_none=True)})))

        async def finish(status: ConfigStatus | None) -> None:
            await asyncio.gather(*pending, return_exceptions=True)
            if status is None:
                await send({"ok": True, "result": None, "note": "nothing to apply"})
                return
            await send({"ok": status.state == "applied",
                        "result": status.model_dump(mode="json", exclude_none=True)})

        if op == "status":
            await send({"ok": True, "status": self._status()})
        elif op == "apply" and isinstance(request.get("config"), str):
            author = request.get("author")
            if not isinstance(author, str) or not 0 < len(author) <= 128 \
                    or not author.isprintable():
                await send({"ok": False, "error": "apply needs an author (1-128 printable "
                                                  "characters)"})
                return
            await finish(await self._apply_text(request["config"], author, progress))
        elif op == "apply" and isinstance(request.get("envelope"), dict):
            raw = json.dumps(request["envelope"], ensure_ascii=False).encode()
            await finish(await self._apply_envelope(raw, progress))
        elif op == "reload":
            await finish(await self._reload())
        elif op == "incident" and self._incidents is not None:  # issue 12
            await send(await self._incidents(request))
        elif op == "drill" and self._drills is not None:  # issue 12: live drills
            await send(await self._drills(request))
        else:
            await send({"ok": False, "error": "unknown request: op must be status, reload, or "
                                              "apply with config or envelope"})


def peer_name(writer: asyncio.StreamWriter) -> str:
    """The user of the process at the other end of the socket (SO_PEERCRED): the name the
    gateway itself checked, for the journal beside what the client says of itself."""
    import pwd
    import struct

    sock = writer.get_extra_info("socket")
    try:
        _pid, uid, _gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except (OSError, AttributeError, struct.error):
        return "unknown user"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def request(path: Path, body: dict[str, Any], timeout: float = 300.0) -> Iterator[dict[str, Any]]:
    """Send one request to a running gateway; yield every answer line (the last has `ok`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        sock.close()
        raise ControlError(f"no gateway is running here (no control socket at {path})") from None
    except PermissionError:
        sock.close()
        raise ControlError(f"no permission to use {path} (run as root or a member of the "
                           "roomwarden group)") from None
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot reach the gateway at {path}: {exc}") from None
    with sock, sock.makefile("rb") as answers:
        sock.sendall(json.dumps(body, ensure_ascii=False).encode() + b"\n")
        for line in answers:
            try:
                answer = json.loads(line)
            except ValueError as exc:
                raise ControlError(f"the gateway sent a bad answer: {exc}") from None
            if not isinstance(answer, dict):
                raise ControlError("the gateway sent a bad answer")
            yield answer
            if "ok" in answer:
                return
    raise ControlError("the gateway closed the connection without an answer")
