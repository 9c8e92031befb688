"""The gateway's retained state on MQTT: the GatewayState (birth, refreshes, offline), the
point catalog and the active-alarm snapshot, each a snapshot that replaces any older
unpublished one in the outbox. The catalog and the active-alarm snapshot (an alarm state) are
committed before they are published; the `online` GatewayState is a status report the next
refresh and every birth replace, kept in the outbox's memory only
(gateway.uplink.outbox_volatile: why that loses nothing the central side needs).

When the state is queued again (no timer shorter than a real deadline):
- every `state_interval` (one `call_later` on the event loop, re-armed each time);
- at once when the config identity changes (`set_config_identity`);
- when the devices online changed: checked when a poll's samples arrive (`on_samples`), at
  most every `STATE_CHECK` seconds — the figure cannot change between polls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from gateway import __version__
from gateway.alarms.events import AlarmView
from gateway.clock import Clock
from gateway.contract.alarm_reports import AlarmEntry, SnapshotReport
from gateway.contract.outbound import CatalogReport, DeliveryTerms, OutboxFigures, StateReport
from gateway.contract.vocab import MAX_ACTIVE_ALARMS, ContractError, MessageKind
from gateway.uplink.items import Item
from gateway.uplink.records import alarm_entry

if TYPE_CHECKING:
    from gateway.contract.events import ActiveAlarm

log = logging.getLogger("roomwarden.uplink")

STATE_CHECK = 1.0
"""At most this often the devices-online figure is compared with the last published state."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
OMITTED_LOG_S = 60.0
"""A snapshot that leaves alarms out is logged at most this often (monotonic seconds)."""
_Ranked = TypeVar("_Ranked", bound="AlarmEntry | ActiveAlarm")


def most_important(alarms: Sequence[_Ranked], limit: int) -> tuple[list[_Ranked], int]:
    """At most `limit` of `alarms`, in their own order, and how many were left out: the most
    important kept — annunciated before overlaid (shelved, suppressed, out of service), a real
    alarm before a drill's, then by severity (critical first), then the most recent activation
    first."""
    if len(alarms) <= limit:
        return list(alarms), 0

    def rank(i: int) -> tuple[bool, bool, int, int]:
        a = alarms[i]
        return (not a.state.annunciated, a.drill, a.severity.level, -(a.activated or 0))

    keep = set(sorted(range(len(alarms)), key=rank)[:max(0, limit)])
    return [a for i, a in enumerate(alarms) if i in keep], len(alarms) - len(keep)


class StatePublisher:
    def __init__(self, site: str, gateway: str, clock: Clock, catalog: CatalogReport, *,
                 interval: float, send: Callable[[Item], None],
                 outbox: Callable[[], tuple[OutboxFigures, dict[MessageKind, int]]],
                 delivery: Callable[[], DeliveryTerms],
                 devices: Callable[[], tuple[int, int]] | None = None,
                 on_reject: Callable[[str], None]) -> None:
        """`send` queues an item for the outbox (urgently); `outbox` gives its latest status
        and drop counts; `delivery` how the outbox lets go of entries; `devices` returns
        (online, total) and is called on the event loop."""
        self.site = site
        self.gateway = gateway
        self.clock = clock
        self.catalog = catalog
        self.interval = interval
        self.boot_ns = clock.now_ns()
        self._send = send
        self._outbox = outbox
        self._delivery = delivery
        self._devices = devices
        self._on_reject = on_reject
        self.snapshot: SnapshotReport | None = None
        self._devices_now: tuple[int, int] | None = None
        self._devices_failed = False
        self._config_identity: tuple[str, str] | None = None
        self._published: tuple[object, ...] | None = None
        """What the last queued state said about devices and config (a change re-queues)."""
        self._checked = float("-inf")
        self._omitted_logged = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ what changes it

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._loop = None

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self._refresh)

    def _refresh(self) -> None:
        try:
            self.queue_state()
        except Exception:  # the state must never stop the uplink
            log.exception("event=uplink_state_failed")
        self._arm()

    def on_samples(self) -> None:
        """A poll's samples arrived: re-queue the state if the devices online changed."""
        now = self.clock.monotonic()
        if now - self._checked < STATE_CHECK:
            return
        self._checked = now
        self._poll_devices()
        if self._key() != self._published:
            self.queue_state()

    def set_config_identity(self, version: int, sha256: str) -> None:
        """The running config's version and SHA-256 (hex); shown in GatewayState, which is
        re-published at once when they change."""
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError("config version must be a non-negative integer")
        if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
            raise ValueError("config sha256 must be 64 lowercase hex digits")
        changed = self._config_identity != (str(version), sha256)
        self._config_identity = (str(version), sha256)
        if changed and self._loop is not None:
            self.queue_state()

    def set_active_alarms(self, alarms: Iterable[AlarmView], seq: int) -> None:
        """The alarms that are not normal now (`AlarmManager.active()`) and the last event's
        seq they reflect. More than the contract's `MAX_ACTIVE_ALARMS`: the most important of
        them (`most_important`), the snapshot saying how many were left out (`omitted`, also
        logged at most every `OMITTED_LOG_S`) — never no snapshot at all (F5)."""
        items: list[AlarmEntry] = []
        for view in alarms:
            try:
                items.append(alarm_entry(view))
            except ContractError as exc:
                self._on_reject(f"active alarm {view.key}: {exc}")
        kept, omitted = most_important(items, MAX_ACTIVE_ALARMS)
        if omitted:
            now = self.clock.monotonic()
            if now - self._omitted_logged >= OMITTED_LOG_S:
                self._omitted_logged = now
                log.warning("event=uplink_active_alarms_truncated alarms=%d sent=%d omitted=%d "
                            "limit=%d", len(items), len(kept), omitted, MAX_ACTIVE_ALARMS)
        snap = SnapshotReport(site=self.site, gateway=self.gateway, ts=self.clock.now_ns(),
                              seq=seq, alarms=tuple(kept), omitted=omitted or None)
        try:
            snap.wire()  # checked here, as the model was (encoded by the writer)
        except ContractError as exc:  # (a bug: the limit is kept above)
            self._on_reject(f"active alarms snapshot: {exc}")
            return
        self.snapshot = snap
        self._send(Item(MessageKind.STATE, snap, snap.ts))

    # ------------------------------------------------------------------ the messages

    def _poll_devices(self) -> None:
        """Ask the daemon for (online, total); a failing provider is logged once, not fatal."""
        if self._devices is None:
            return
        try:
            online, total = self._devices()
            value = (max(0, int(online)), max(0, int(total)))
        except Exception as exc:
            if not self._devices_failed:
                log.error("event=uplink_devices_provider_failed error=%r",
                          f"{type(exc).__name__}: {exc}")
            self._devices_failed = True
            return
        self._devices_failed = False
        self._devices_now = value

    def _key(self) -> tuple[object, ...]:
        return (self._devices_now, self._config_identity)

    def state(self) -> StateReport | None:
        """The `online` GatewayState now (None if the contract refuses it: logged)."""
        self._poll_devices()
        version, digest = self._config_identity or (None, None)
        online, total = self._devices_now or (None, None)
        status, dropped = self._outbox()
        state = StateReport(site=self.site, gateway=self.gateway, status="online",
                            ts=self.clock.now_ns(), software=__version__,
                            config_version=version, config_hash=digest,
                            catalog=self.catalog.catalog, boot=self.boot_ns, outbox=status,
                            dropped=dict(dropped), devices_online=online,
                            devices_total=total, delivery=self._delivery())
        try:
            state.wire()  # checked here, as the model was (encoded by the writer)
        except ContractError as exc:
            self._on_reject(f"state: {exc}")
            return None
        self._published = self._key()
        return state

    def offline(self) -> StateReport:
        """The last will and the clean goodbye."""
        return StateReport(site=self.site, gateway=self.gateway, status="offline",
                           ts=self.clock.now_ns())

    def queue_state(self) -> None:
        state = self.state()
        if state is not None:
            self._send(Item(MessageKind.STATE, state, state.ts))

    def births(self, state: StateReport | None) -> list[Item]:
        """State (if any), catalog (produced now) and the active-alarm snapshot."""
        now = self.clock.now_ns()
        catalog = dataclasses.replace(self.catalog, produced=now)
        items = [Item(MessageKind.STATE, catalog, now)]
        if state is not None:
            items.insert(0, Item(MessageKind.STATE, state, state.ts))
        if self.snapshot is not None:
            items.append(Item(MessageKind.STATE, self.snapshot, now))
        return items
