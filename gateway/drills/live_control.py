"""Live drills on a running gateway: the control socket's `{"op": "drill"}` requests.

    {"op": "drill", "action": "start", "file": "<drill YAML text>", "name": "<file name>",
     "evacuation": false, "actor": "alice"}
    {"op": "drill", "action": "stop", "actor": "alice"}
    {"op": "drill", "action": "status"}

The socket's file permissions are the authentication (root and the roomwarden group), as for
`roomwarden config apply`. A start parses and checks the drill (`LiveDrill`: the room, its
points, no real alarm active there, no other drill running) and attaches it to the safety
core; nothing else changes until the evaluator's next round. When the drill ends (its
duration, a stop, a real alarm in the room, a config apply), its evaluation
(gateway.drills.live_eval) is made from the journal and the output writes, kept as the last
drill's result and stored as an incident record of kind `drill` (gateway.recorder.incidents),
which `roomwarden incident show/export` render.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from gateway.config.loader import ConfigErrors, parse_yaml, validate
from gateway.control import as_peer
from gateway.drills.signed import DrillRefused, check_start, check_still_valid
from gateway.offloop import off_loop

if TYPE_CHECKING:
    from gateway.daemon import Gateway
    from gateway.drills.live import LiveDrill
    from gateway.drills.model import Drill

log = logging.getLogger("roomwarden.drill")

MAX_FILE_CHARS = 256 * 1024
MAX_EVENTS = 20_000
"""The journal events an evaluation reads (a flood in a long drill is cut, and says so)."""
STOP_WAIT = 10.0


class LiveDrills:
    """The running gateway's live drill (one at a time) and the last one's evaluation."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.session: LiveDrill | None = None
        self.evaluation: dict[str, Any] | None = None
        self.incident: str | None = None
        self._ended_event: asyncio.Event | None = None
        """What a `stop` waits on (the idle audit: it looked every 50 ms)."""

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        action = request.get("action")
        actor = request.get("actor", "local")
        if not isinstance(actor, str) or not 0 < len(actor) <= 64 or not actor.isprintable():
            return {"ok": False, "error": "actor: 1-64 printable characters"}
        peer = request.get("peer")  # the control socket's: the user the kernel names
        if isinstance(peer, str) and peer != actor:  # within the wire's 64 characters
            actor = as_peer(actor, peer, " as {}")
        self._notice_end()
        if action == "start":
            return await self._start(request, actor)
        if action == "stop":
            return await self._stop(actor)
        if action == "status":
            return self._status()
        return {"ok": False, "error": "drill requests: action start (with file), stop or "
                                      "status"}

    async def _start(self, request: dict[str, Any], actor: str) -> dict[str, Any]:
        # the drill's models and engine are imported when a drill is run, not at every start
        from gateway.drills.live import LiveDrill, LiveDrillError

        text, name = request.get("file"), request.get("name", "drill")
        evacuation = request.get("evacuation", False)
        if not isinstance(text, str) or len(text) > MAX_FILE_CHARS:
            return {"ok": False, "error": f"start needs the drill file's text (at most "
                                          f"{MAX_FILE_CHARS} characters)"}
        if not isinstance(name, str) or not isinstance(evacuation, bool):
            return {"ok": False, "error": "name is a string, evacuation true or false"}
        name = name[-200:]
        began = self.gateway.clock.monotonic()
        try:  # in a thread: the replay memory's write (an fsync, or up to its 5 s busy
            # timeout behind another process's lock) held the event loop (DESIGN 4, 13)
            if request.get("signed") is not None:
                self.gateway.replay_memory()  # (opened here, on the loop, once)
            signer = await off_loop(self._signer, request, text, name, evacuation)
        except DrillRefused as exc:
            return _refused(name, request, exc)
        if signer is not None:  # the key's owner, as the user the kernel names
            actor = as_peer(signer, str(request.get("peer", "unknown user")), " as {}")
        try:  # read in a thread: a 256 KiB file held the event loop (the rules) ~0.3 s
            drill = await asyncio.to_thread(_read_drill, text, name)
            session = LiveDrill(drill, self.gateway.core, evacuation=evacuation, actor=actor,
                                source=name)
        except ConfigErrors as exc:
            return {"ok": False, "error": "\n".join(str(e) for e in exc.errors)}
        except LiveDrillError as exc:
            return {"ok": False, "error": str(exc)}
        if self.session is not None and not self.session.finished:
            return {"ok": False, "error": f"drill {self.session.drill.drill!r} is running; "
                                          "stop it first"}
        if signer is not None:  # checked before its id's write and the file's read: still?
            try:
                check_still_valid(request["signed"], now_ns=self.gateway.clock.now_ns(),
                                  waited_s=self.gateway.clock.monotonic() - began)
            except DrillRefused as exc:
                return _refused(name, request, DrillRefused(f"signed drill refused: {exc}"),
                                expired_waiting=True)
        session.on_end = self._ended
        self.session, self.evaluation, self.incident = session, None, None
        self.gateway.core.drill = session
        self.gateway.evaluator.reschedule()  # its start and its times are deadlines now
        log.warning("event=drill_accepted drill=%s room=%s mode=%s actor=%s", drill.drill,
                    drill.room, session.mode, actor)
        return {"ok": True, "drill": session.status()}

    def _signer(self, request: dict[str, Any], text: str, name: str,
                evacuation: bool) -> str | None:
        """The owner of the key that signed the start (gateway.drills.signed), None for an
        unsigned one that needs none; DrillRefused for one that is not taken (an unsigned
        evacuation while local users may not change things unsigned, a bad signature)."""
        cfg = self.gateway.loaded.config
        signed = request.get("signed")
        if signed is None:
            if evacuation and cfg.flashing is not None \
                    and not cfg.flashing.allow_local_unsigned:
                raise DrillRefused(
                    "an evacuation drill must be signed here (flashing.allow_local_unsigned "
                    "is false): roomwarden drill --live FILE --evacuation --key KEY, with a "
                    "key of operators.keys that may drill")
            return None
        try:
            return check_start(signed, text=text, name=name, evacuation=evacuation,
                               gateway=cfg.gateway.id, site=cfg.gateway.site,
                               operators=cfg.operators,
                               replay=self.gateway.replay_memory(),
                               now_ns=self.gateway.clock.now_ns())
        except DrillRefused as exc:
            raise DrillRefused(f"signed drill refused: {exc}") from None

    async def _stop(self, actor: str) -> dict[str, Any]:
        session = self.session
        if session is None or session.finished:
            return {"ok": False, "error": "no drill is running", **self._last()}
        session.request_stop(f"stopped by {actor}")
        self.gateway.evaluator.reschedule()  # the stop is due at once, not at the next poll
        ended = self._ended_event = asyncio.Event()  # set by `_ended` (the next round)
        deadline = asyncio.get_running_loop().time() + STOP_WAIT
        while not session.finished and (left := deadline - asyncio.get_running_loop().time()) > 0:
            with contextlib.suppress(TimeoutError):  # (at most a second: a config apply
                await asyncio.wait_for(ended.wait(), min(1.0, left))  # ends it another way)
            self._notice_end()
        return {"ok": session.finished, "drill": session.status(), **self._last()}

    def _status(self) -> dict[str, Any]:
        session = self.session
        return {"ok": True, "drill": None if session is None else session.status(),
                **self._last()}

    def _last(self) -> dict[str, Any]:
        return {"evaluation": self.evaluation, "incident": self.incident}

    def banner(self) -> dict[str, Any] | None:
        """The running drill for the panel's banner (None when none runs)."""
        self._notice_end()
        session = self.session
        return None if session is None or session.finished else session.status()

    def _notice_end(self) -> None:
        """A config apply replaced the safety core under a running drill: it is over (the new
        core's alarm manager ended the drill's alarms when it opened the journal)."""
        session = self.session
        if session is not None and not session.finished \
                and self.gateway.core is not session.core:
            session.follow_clock()
            session.finished = True
            session.outcome.end_ns = self.gateway.clock.now_ns()
            session.outcome.end_reason = "the gateway's config changed"
            self._ended(session)

    def _ended(self, session: LiveDrill) -> None:
        """The drill is over: evaluate it and keep it as an incident record."""
        from gateway.drills.live_eval import evaluate  # the drill runner's judge: on demand

        if self._ended_event is not None:
            self._ended_event.set()

        try:
            alarms = self.gateway.core.alarms
            events = alarms.events_since(session.outcome.start_seq, limit=MAX_EVENTS)
            keeper = self.gateway.recording.keeper
            writes = [dict(c) for c in keeper.recent_outputs if c["kind"] == "write"] \
                if keeper is not None else []
            self.evaluation = evaluate(session, events, writes)
            log.warning("event=drill_evaluated drill=%s ok=%s missed=%d", session.drill.drill,
                        self.evaluation["ok"], len(self.evaluation["missed"]))
            start = next((e for e in events if e.drill and e.rule == "$drill"), None)
            if keeper is not None and start is not None:
                moved = session.on_new_clock  # the record's times on the recorder's clock
                self.incident = keeper.save_drill(
                    moved(start), session.room, session.outcome.start_ns,
                    session.outcome.end_ns or self.gateway.clock.now_ns(),
                    [moved(e) for e in events if e.room in (session.room, None)],
                    self.evaluation)
        except Exception:  # an evaluation bug must not take the evaluator down
            log.exception("event=drill_evaluation_failed drill=%s", session.drill.drill)


def _refused(name: str, request: dict[str, Any], exc: DrillRefused, *,
             expired_waiting: bool = False) -> dict[str, Any]:
    """The answer to a start not taken, logged (`expired_waiting`: it was valid when checked
    and expired while it waited for the replay memory)."""
    log.warning("event=drill_refused name=%r peer=%s expired_waiting=%s reason=%r", name,
                request.get("peer"), expired_waiting, str(exc))
    return {"ok": False, "error": str(exc)}


def _read_drill(text: str, name: str) -> Drill:
    from gateway.drills.model import Drill  # imported when a drill is run

    data, lines = parse_yaml(text, name)
    return validate(Drill, data, name, lines)
