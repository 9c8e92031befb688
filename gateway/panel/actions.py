"""The panel's alarm commands (a mixin of `gateway.panel.server.PanelServer`): a logged-in
user's acknowledge, reset, shelve, unshelve, suppress and output reset, each carried out by the
daemon's one `OperatorCommands` (the service `cmd` uses too), logged with the user, and a
refusal a 409 whose times are in the site's zone.

Each needs its right in the user's `panel.users[].may` (the names of `operators.keys[].may`;
default: all), else 403 `not_permitted` saying which. A suppression's answer says what it hides:
the alarms of the alarm list its scope covers (`covers`, and the first `MAX_LISTED` of them)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar
from zoneinfo import ZoneInfo

from gateway.alarms.lifecycle import scope_covers
from gateway.ops.httptypes import HttpError, Request, Response, json_response
from gateway.panel.backend import CommandRefused, PanelBackend
from gateway.panel.logfmt import kv
from gateway.panel.requests import json_body

if TYPE_CHECKING:  # the panel's models (pydantic): imported at the first command (issue 15)
    from pydantic import BaseModel

    from gateway.panel.views import (
        AcknowledgeCommand,
        Acknowledged,
        AlarmCommand,
        PanelAlarm,
        ResetAlarmCommand,
        ShelveCommand,
        SuppressCommand,
    )

log = logging.getLogger("gateway.panel.server")

M = TypeVar("M", bound="BaseModel")

MAX_LISTED = 20
"""How many of the alarms a suppression hides its answer names (all are counted)."""
_IN_THE_LIST = ("active_unacknowledged", "active_acknowledged", "returned_unacknowledged")

RIGHTS = {"acknowledge": ("acknowledge", "acknowledge_all"),
          "reset": ("acknowledge", "acknowledge_all"),
          "shelve": ("shelve",), "unshelve": ("shelve",),
          "suppress": ("suppress",), "unsuppress": ("suppress",),
          "reset_output": ("reset_output",)}
"""The rights (`panel.users[].may`) each command takes: any one of them."""

_UTC_TIME = re.compile(r"\b(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)Z\b")


def site_times(text: str, timezone: str) -> str:
    """`text` with its UTC timestamps (`2024-05-01T06:03:00Z`, the alarms' refusals) in the
    site's zone: `2024-05-01 14:03:00 Asia/Shanghai`."""
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):
        return text

    def local(match: re.Match[str]) -> str:
        when = datetime.fromisoformat(f"{match[1]}T{match[2]}").replace(tzinfo=UTC)
        return f"{when.astimezone(zone):%Y-%m-%d %H:%M:%S} {timezone}"

    return _UTC_TIME.sub(local, text)


def _alarm(c: AlarmCommand | ResetAlarmCommand | ShelveCommand) -> dict[str, object]:
    return {"alarm": f"{c.alarm.rule}/{c.alarm.subject}"}


class PanelActions:
    """The POST routes that change something; see the module docstring."""

    _backend: PanelBackend
    _may: dict[str, frozenset[str]]
    """Each user's rights (`panel.users[].may`)."""

    def _require_user(self, request: Request) -> str:
        raise NotImplementedError

    def _require_right(self, user: str, event: str) -> None:
        """403 unless `user` has one of the rights `event` takes."""
        rights = RIGHTS[event]
        may = self._may.get(user, frozenset())
        if may.intersection(rights):
            return
        log.warning(kv(f"panel_{event}_not_permitted", user=user))
        has = ", ".join(sorted(may)) if may else "only view"
        raise HttpError(403, "not_permitted",
                        f"{user} may not {event.replace('_', ' ')}: that needs "
                        f"{' or '.join(rights)} in the user's `may:` (panel.users); {user} "
                        f"may {has}")

    def _refusal(self, exc: CommandRefused) -> str:
        text = str(exc) or "command refused"
        try:
            return site_times(text, self._backend.panel_state().timezone)
        except Exception:  # the refusal matters more than its times' zone
            return text

    async def _command(self, request: Request, model: type[M], event: str,
                       run: Callable[[M, str], int | str | Acknowledged | dict[str, object]
                                     | None],
                       target: Callable[[M], dict[str, object]],
                       detail: Callable[[M], dict[str, object]]) -> Response:
        """A logged-in user's alarm command: parsed, run in the user's name and logged; a
        refusal is a 409 with the reason."""
        from gateway.panel.views import Acknowledged

        user = self._require_user(request)
        command = json_body(request, model)
        self._require_right(user, event)
        where = target(command)
        try:
            changed = run(command, user)
        except CommandRefused as exc:
            log.info(kv(f"panel_{event}_refused", user=user, **where, reason=exc))
            raise HttpError(409, "refused", self._refusal(exc)) from None
        counted: dict[str, object] = {}
        logged: dict[str, object]
        if isinstance(changed, Acknowledged):  # an acknowledge that skips the done ones
            counted = changed.model_dump(mode="json")
            logged = {"changed": changed.changed, "skipped": ",".join(
                f"{s.rule}/{s.subject}" for s in changed.skipped) or None}
        elif isinstance(changed, dict):  # what a suppression hides
            counted = changed
            logged = {"covers": changed.get("covers")}
        elif isinstance(changed, str):  # what a reset_output did, in words
            counted = {"note": changed}
            logged = {"result": changed}
        else:
            counted = {} if changed is None else {"changed": changed}
            logged = counted
        log.info(kv(f"panel_{event}", user=user, **where, **logged, **detail(command)))
        return json_response({"ok": True, **counted})

    async def _acknowledge(self, request: Request) -> Response:
        from gateway.panel.views import AcknowledgeCommand

        def run(c: AcknowledgeCommand, user: str) -> int | Acknowledged:
            if c.skip_acknowledged:
                return self._backend.acknowledge_waiting(c.alarms, user, c.note)
            return self._backend.acknowledge(c.alarms, user, c.note)

        return await self._command(
            request, AcknowledgeCommand, "acknowledge", run,
            lambda c: {"alarms": ",".join(f"{a.rule}/{a.subject}" for a in c.alarms)},
            lambda c: {"note": c.note})

    async def _reset_alarm(self, request: Request) -> Response:
        from gateway.panel.views import ResetAlarmCommand

        return await self._command(
            request, ResetAlarmCommand, "reset",
            lambda c, user: self._backend.reset_alarm(c.alarm, user, c.note),
            _alarm, lambda c: {"note": c.note})

    async def _shelve(self, request: Request) -> Response:
        from gateway.panel.views import ShelveCommand

        return await self._command(
            request, ShelveCommand, "shelve",
            lambda c, user: self._backend.shelve(c.alarm, user, c.minutes, c.reason),
            _alarm, lambda c: {"minutes": c.minutes, "reason": c.reason})

    async def _unshelve(self, request: Request) -> Response:
        from gateway.panel.views import AlarmCommand

        return await self._command(
            request, AlarmCommand, "unshelve",
            lambda c, user: self._backend.unshelve(c.alarm, user), _alarm, lambda c: {})

    async def _suppress(self, request: Request) -> Response:
        from gateway.panel.views import SuppressCommand

        def run(c: SuppressCommand, user: str) -> dict[str, object]:
            hidden = self._in_the_list(c.scope)  # read before: after, they are suppressed
            self._backend.suppress(c.scope, user, c.minutes, c.reason)
            listed = [{"rule": a.rule, "subject": a.subject, "title": a.title,
                       "severity": a.severity, "state": a.state} for a in hidden[:MAX_LISTED]]
            return {"covers": len(hidden), "alarms": listed,
                    "more": max(0, len(hidden) - MAX_LISTED)}

        return await self._command(
            request, SuppressCommand, "suppress", run,
            lambda c: {"scope": c.scope}, lambda c: {"minutes": c.minutes, "reason": c.reason})

    def _in_the_list(self, scope: str) -> list[PanelAlarm]:
        """The alarms of the alarm list (active, or waiting for an acknowledgement) that
        `scope` covers."""
        scope = scope.strip()
        return [a for a in self._backend.panel_state().alarms if a.state in _IN_THE_LIST
                and scope_covers(scope, a.rule, a.subject, a.room)]

    async def _unsuppress(self, request: Request) -> Response:
        from gateway.panel.views import UnsuppressCommand

        return await self._command(
            request, UnsuppressCommand, "unsuppress",
            lambda c, user: self._backend.unsuppress(c.scope, user),
            lambda c: {"scope": c.scope}, lambda c: {})

    async def _reset_output(self, request: Request) -> Response:
        from gateway.panel.views import ResetOutputCommand

        return await self._command(
            request, ResetOutputCommand, "reset_output",
            lambda c, user: self._backend.reset_output(c.output, user, c.note),
            lambda c: {"output": c.output}, lambda c: {"note": c.note})
