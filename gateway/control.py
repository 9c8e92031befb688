"""The local control socket: how `roomwarden status` and `roomwarden config apply` talk to the
running gateway on the same machine.

A Unix stream socket (default `$RUNTIME_DIRECTORY/control.sock`, i.e. /run/roomwarden under
systemd, else `<state dir>/control.sock`), mode 0660: the file permissions are the
authentication (root and the `roomwarden` group). A socket file left by a process that died is
replaced at start; one that answers is not: that gateway refuses to start instead
(`refuse_if_live`). One JSON request per connection, one line:

    {"op": "status"}
    {"op": "apply", "config": "<YAML text>", "author": "alice"}     unsigned, local
    {"op": "apply", "envelope": {...}}                               a signed ConfigSet
    {"op": "reload"}                                                 like SIGHUP
    {"op": "incident", "action": "list"} / {..., "action": "get", "id": ...}   issue 12
    {"op": "drill", "action": "start" | "stop" | "status", ...}   issue 12: live drills
                                                     (gateway.drills.live_control)

Answers are JSON lines: `{"progress": ConfigStatus}` while an apply goes on, then one final
`{"ok": true|false, ...}`. Bad requests get `{"ok": false, "error": "..."}`; nothing a client
sends can stop the gateway. Every refusal is answered before the connection closes: a request
not complete within REQUEST_TIMEOUT_S (`timeout: …`), one larger than MAX_REQUEST_BYTES (the rest
is read and dropped, up to MAX_DISCARD_BYTES, so that the client, still writing, gets to read
the answer), and `busy: …` when MAX_CONNECTIONS requests are being served and the one slot
kept for `status` and `drill` stop/status (QUICK_OPS; such a request is read with
QUICK_LIMIT_BYTES and QUICK_TIMEOUT_S) is taken too.

Who asked is the kernel's word (SO_PEERCRED, `peer_name`), not the client's: an unsigned apply
is recorded as `<author> (as <user>)` (log, config store), a drill as `<actor> as <user>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the status model is pydantic; the applier imports it at an apply (issue 15)
    from gateway.contract.configmsg import ConfigStatus

log = logging.getLogger("roomwarden.control")

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A config is at most 512 KiB; JSON escaping can double or triple it."""
MAX_CONNECTIONS = 8
"""Requests served at once; more are answered "busy" at once and closed (each may hold up to
MAX_REQUEST_BYTES while it is read: 150 clients took the gateway to 1.2 GB in the audit) —
but for one more slot kept for QUICK_OPS."""
REQUEST_TIMEOUT_S = 30.0
"""A request (one line) must be complete within this."""
MAX_DISCARD_BYTES = 64 * 1024 * 1024
"""How much of an oversized request is read and dropped before its refusal is sent."""
QUICK_OPS: dict[str, tuple[str, ...] | None] = {"status": None, "drill": ("stop", "status")}
"""What the spare slot serves when MAX_CONNECTIONS are busy: `status`, and a drill's `stop`
and `status` (a held socket must not keep a technician from stopping a live drill)."""
QUICK_LIMIT_BYTES = 64 * 1024
QUICK_TIMEOUT_S = 5.0
MAX_AUTHOR = 64
"""The longest author a config's metadata keeps (`gateway.contract.base.Actor`)."""
SOCKET_NAME = "control.sock"
_CHUNK = 64 * 1024

StatusHandler = Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]]
Progress = Callable[["ConfigStatus"], None]
ApplyText = Callable[[str, str, Progress], Awaitable["ConfigStatus"]]
ApplyEnvelope = Callable[[bytes, Progress], Awaitable["ConfigStatus"]]
Reload = Callable[[], Awaitable["ConfigStatus | None"]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Incidents = Callable[[dict[str, Any], Send], Awaitable[dict[str, Any]]]  # issue 12
Drills = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # issue 12: live drills


class ControlError(RuntimeError):
    """The client could not talk to the gateway (not running, no permission, bad answer)."""


class ControlSocketInUse(RuntimeError):
    """A live gateway listens on the socket path (`refuse_if_live`)."""


class _Refused(Exception):
    """A request that cannot be read: answered with this message, then closed."""


def refuse_if_live(path: Path, timeout: float = 2.0) -> None:
    """ControlSocketInUse if something answers a connect at `path` (or cannot be told from a
    live gateway): only a stale socket (connection refused: its process died) or nothing at
    all may be replaced. A second gateway given the same socket used to unlink the first
    one's live socket as "stale": `roomwarden status` then found no gateway running."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return
    except OSError as exc:  # no permission, a full backlog (busy, so alive), ...
        raise ControlSocketInUse(f"cannot tell whether a gateway listens on the control socket "
                                 f"{path} ({exc}): stop it first, or give this one a socket "
                                 "of its own (--socket)") from None
    finally:
        probe.close()
    raise ControlSocketInUse(f"another gateway is listening on the control socket {path}: "
                             "stop it first, or give this one a socket of its own (--socket)")


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
        self._quick_busy = False
        self.request_timeout = REQUEST_TIMEOUT_S
        self.quick_timeout = QUICK_TIMEOUT_S

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        refuse_if_live(self.path)  # ControlSocketInUse: a live one is never unlinked
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
                self.path.unlink()  # ours: one that never started leaves another's alone

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(obj: dict[str, Any]) -> None:
            writer.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
            await writer.drain()

        quick = self._serving >= MAX_CONNECTIONS
        if quick and self._quick_busy:
            with contextlib.suppress(Exception):
                await send({"ok": False, "error": self._busy()})
            writer.close()
            return
        if quick:
            self._quick_busy = True
        else:
            self._serving += 1
        try:
            try:
                line = await self._read(reader, QUICK_LIMIT_BYTES if quick else
                                        MAX_REQUEST_BYTES,
                                        self.quick_timeout if quick else self.request_timeout)
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("the request is not a JSON object")
                # text only: a lone surrogate (a JSON escape) is no character of any file
                json.dumps(request, ensure_ascii=False).encode()
            except _Refused as exc:
                await send({"ok": False, "error": str(exc)})
                return
            except RecursionError:
                await send({"ok": False, "error": "bad request: nested too deeply"})
                return
            except (ValueError, UnicodeError) as exc:
                await send({"ok": False, "error": f"bad request: {exc}"})
                return
            if quick and not _is_quick(request):
                await send({"ok": False, "error": self._busy()})
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
            if quick:
                self._quick_busy = False
            else:
                self._serving -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _busy(self) -> str:
        return (f"busy: {self._serving} requests are being served (at most {MAX_CONNECTIONS} "
                "at once, and one more for status and drill stop/status); each is read within "
                f"{self.request_timeout:g} s, an apply holds its connection until its health "
                "check ends: try again in a few seconds")

    async def _read(self, reader: asyncio.StreamReader, limit: int, timeout: float) -> bytes:
        """One request line (without its newline; at EOF what came), at most `limit` bytes
        within `timeout` s, else `_Refused` — an oversized one after reading and dropping its
        rest (bounded), so that the client, still writing, reads the refusal."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        line = bytearray()
        while True:
            chunk = await self._chunk(reader, deadline, timeout)
            end = chunk.find(b"\n")
            line += chunk if end < 0 else chunk[:end]
            if len(line) > limit:
                await self._drop_rest(reader, chunk if end < 0 else b"\n", deadline)
                raise _Refused(f"bad request: larger than {limit} bytes (a request is one JSON "
                               f"line of at most {limit // 1024} KiB"
                               + ("" if limit == MAX_REQUEST_BYTES else
                                  " while the other slots are busy") + ")")
            if end >= 0 or not chunk:
                return bytes(line)

    @staticmethod
    async def _chunk(reader: asyncio.StreamReader, deadline: float, timeout: float) -> bytes:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            return await asyncio.wait_for(reader.read(_CHUNK), remaining)
        except TimeoutError:
            raise _Refused(f"timeout: no complete request within {timeout:g} s (a request "
                           "is one JSON line, ending in a newline)") from None

    async def _drop_rest(self, reader: asyncio.StreamReader, last: bytes,
                         deadline: float) -> None:
        """Read and drop up to the request's end (its newline, EOF), MAX_DISCARD_BYTES or the
        deadline."""
        dropped = 0
        while b"\n" not in last and last and dropped < MAX_DISCARD_BYTES:
            try:
                last = await self._chunk(reader, deadline, 0)
            except _Refused:  # out of time: refused now, whatever is still coming
                return
            dropped += len(last)

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
            status = self._status()
            if inspect.isawaitable(status):  # (what it first imports: off the loop's thread)
                status = await status
            await send({"ok": True, "status": status})
        elif op == "apply" and isinstance(request.get("config"), str):
            author = request.get("author")
            if not isinstance(author, str) or not 0 < len(author) <= 128 \
                    or not author.isprintable():
                await send({"ok": False, "error": "apply needs an author (1-128 printable "
                                                  "characters)"})
                return
            recorded = as_peer(author, str(request.get("peer", "unknown user")))
            log.info("event=control_apply author=%r peer=%s", author, request.get("peer"))
            await finish(await self._apply_text(request["config"], recorded, progress))
        elif op == "apply" and isinstance(request.get("envelope"), dict):
            raw = json.dumps(request["envelope"], ensure_ascii=False).encode()
            await finish(await self._apply_envelope(raw, progress))
        elif op == "reload":
            await finish(await self._reload())
        elif op == "incident" and self._incidents is not None:  # issue 12
            await send(await self._incidents(request, send))  # (a record: in parts)
        elif op == "drill" and self._drills is not None:  # issue 12: live drills
            await send(await self._drills(request))
        else:
            await send({"ok": False, "error": "unknown request: op must be status, reload, or "
                                              "apply with config or envelope"})


def _is_quick(request: dict[str, Any]) -> bool:
    op = request.get("op")
    if not isinstance(op, str) or op not in QUICK_OPS:
        return False
    actions = QUICK_OPS[op]
    return actions is None or request.get("action") in actions


def as_peer(author: str, peer: str, joint: str = " (as {})") -> str:
    """`author (as peer)` (`joint` says how): the name the client gave and the user the kernel
    names, within MAX_AUTHOR characters (the author's part shortened, never the user's)."""
    suffix = joint.format(peer)[:MAX_AUTHOR - 2]
    room = MAX_AUTHOR - len(suffix)
    if len(author) > room:
        author = author[:room - 1] + "…"
    return author + suffix


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
        # the gateway may refuse before it has read it all: its answer says why
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(json.dumps(body, ensure_ascii=False).encode() + b"\n")
        try:
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
        except ConnectionResetError:
            pass
        except TimeoutError:  # a gateway that takes the connection and never answers: hung
            raise ControlError(f"the gateway did not answer within {timeout:g} s (busy or "
                               "hung: see its log, `journalctl -u roomwarden`)") from None
    raise ControlError("the gateway closed the connection without an answer")
