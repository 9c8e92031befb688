"""The flight recorder and the incident keeper wired to a running gateway: `Recording` takes
each sample batch (`on_samples`, from `Gateway._on_samples`) and reads what incidents need of
the gateway (journal, output driver, rule bindings, health) as it stands — also after a config
apply, which replaces the safety core, the driver and the config."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gateway.alarms.events import AlarmEvent, AlarmView
from gateway.field.sample import Sample
from gateway.recorder.clockstep import ClockStepFollower
from gateway.recorder.incidents import IncidentKeeper, OutputSnapshot, RoomContext
from gateway.recorder.ring import FlightRecorder
from gateway.recorder.store import IncidentError, IncidentStore, parse_record
from gateway.uplink.incidents import SENT_STATUSES, is_sent, send_record

if TYPE_CHECKING:
    from gateway.actions.driver import OutputDriver
    from gateway.config.loader import LoadedConfig
    from gateway.daemon import Gateway
    from gateway.uplink.publisher import Uplink

log = logging.getLogger("roomwarden.recorder")

_THRESHOLD_WORDS = ("high", "low", "limit")
_THRESHOLD_ENDINGS = ("_lel", "_ppm")


def is_threshold(name: str) -> bool:
    """A rule parameter that is a level to draw on a plot (high, low_v, limit_c, alarm_lel)."""
    return name.split("_")[0] in _THRESHOLD_WORDS or name.endswith(_THRESHOLD_ENDINGS)


def intervals(loaded: LoadedConfig) -> dict[str, float]:
    """Device id → poll interval (s)."""
    return {d.id: float(d.poll_interval or loaded.profile_of(d).default_poll_interval)
            for d in loaded.config.devices}


class Recording:
    """See the module docstring. Disabled sections cost nothing per batch."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        cfg = gateway.loaded.config
        self._loaded = gateway.loaded
        self._intervals = intervals(gateway.loaded)
        self.recorder: FlightRecorder | None = None
        self.keeper: IncidentKeeper | None = None
        if cfg.recorder.enabled:
            self.recorder = FlightRecorder(cfg.recorder.window,
                                           max_points=cfg.recorder.max_points,
                                           interval_of=self._interval_of)
        self.store = IncidentStore(gateway.state_dir / "incidents",
                                   max_bytes=cfg.incidents.max_bytes,
                                   max_incidents=cfg.incidents.max_incidents)
        if self.recorder is not None and cfg.incidents.enabled:
            self.keeper = IncidentKeeper(self.recorder, self.store, cfg.incidents,
                                         _GatewaySources(gateway))
        else:  # (the keeper does it on its writer thread, with marking interrupted records)
            self.store.remove_temporaries()
        self._driver: OutputDriver | None = None
        self._watch_driver()
        self._uplink: Uplink | None = None
        """The uplink unsent records were last handed to (a config apply makes another)."""
        if self.keeper is not None:
            self.keeper.on_final = self._send
        self._steps = None if self.recorder is None else ClockStepFollower(
            gateway.clock, self.recorder, self.keeper)
        """Keeps the recorder and open incidents on one timeline when the wall clock steps."""

    def _watch_driver(self) -> None:
        """Hear of every output write of the present driver (a config apply makes another)."""
        driver = self.gateway.driver
        if driver is self._driver or self.keeper is None:
            return
        keeper = self.keeper
        self._driver = driver
        driver.on_written = lambda output, on, s: keeper.on_written(
            output, on, (s.commanded, s.confirmed, s.last_error, s.writes, s.last_write_ns,
                         s.commanded_ns))

    def _interval_of(self, point: str) -> float:
        if self.gateway.loaded is not self._loaded:  # a config apply
            self._loaded = self.gateway.loaded
            self._intervals = intervals(self._loaded)
        return self._intervals.get(point.split(".", 1)[0], 1.0)

    def on_samples(self, batch: list[Sample]) -> None:
        if self.recorder is None or self._steps is None:
            return
        self.recorder.record(self._steps.before(batch))
        if self.keeper is not None:
            self._watch_driver()
            incidents = self.gateway.loaded.config.incidents
            if incidents is not self.keeper.settings:  # a config apply: its settings now
                self.keeper.settings = incidents
                self.store.max_bytes = incidents.max_bytes
                self.store.max_incidents = incidents.max_incidents
            if self.gateway.uplink is not self._uplink:
                self._uplink = self.gateway.uplink
                if self._uplink is not None:
                    self.keeper.in_writer(self._send_unsent)
            try:
                self.keeper.observe()
            except Exception:  # evidence keeping must never stop acquisition
                log.exception("event=incident_keeper_failed")

    # ---------------------------------------------- over the uplink (on the keeper's writer)

    def _send(self, incident_id: str, status: str) -> None:
        """A record just saved closed or interrupted: to the central side."""
        uplink = self.gateway.uplink
        if uplink is not None:
            send_record(uplink, incident_id, status, self.store.read(incident_id))

    def _send_unsent(self) -> None:
        """Every final record the outbox never got whole (the process died first, the uplink
        was down or replaced, a record from before the uplink was configured)."""
        uplink = self.gateway.uplink
        if uplink is None:
            return
        for incident_id in self.store.ids():
            try:
                data = self.store.read(incident_id)
                if is_sent(uplink, incident_id, data):
                    continue
                status = parse_record(data, incident_id).get("status")
            except IncidentError as exc:
                log.error("event=incident_unreadable id=%s error=%s", incident_id, exc)
                continue
            if status in SENT_STATUSES:
                send_record(uplink, incident_id, str(status), data)

    def close(self) -> None:
        if self.keeper is not None:
            self.keeper.close_all()


class _GatewaySources:
    """`Sources` (gateway.recorder.incidents) read from a running `Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def now_ns(self) -> int:
        return self.gateway.clock.now_ns()

    def last_seq(self) -> int:
        return self.gateway.core.journal.last_seq

    def events_since(self, seq: int) -> list[AlarmEvent]:
        return self.gateway.core.journal.events_since(seq, limit=1000)

    def output_states(self) -> dict[str, OutputSnapshot]:
        return {o: (s.commanded, s.confirmed, s.last_error, s.writes, s.last_write_ns,
                    s.commanded_ns)
                for o, s in self.gateway.driver.state.items()}

    def room_active(self, room: str) -> bool:
        from gateway.recorder.incidents import _ACTIVE

        return any(v.room == room and (v.state in _ACTIVE or v.hidden_active)  # (a shelved
                   and not v.drill  # alarm still driving its outputs) issue 12: drills
                   for v in self.gateway.core.alarms.active())

    def active_alarms(self) -> list[AlarmView]:
        return self.gateway.core.alarms.active()

    def room_context(self, room: str) -> RoomContext:
        from gateway.field.catalog import catalog_points

        loaded = self.gateway.loaded
        devices = {d.id for d in loaded.config.devices if d.room == room}
        rules = []
        for b in self.gateway.core.engine.binding_details():
            if b.room != room:
                continue
            devices.update(p.split(".", 1)[0] for p in b.points)
            rules.append({"rule": b.rule, "subject": b.subject, "points": list(b.points),
                          "thresholds": {k: v for k, v in b.parameters.items()
                                         if is_threshold(k) and isinstance(v, int | float)
                                         and not isinstance(v, bool)}})
        outputs = {o.id: {"role": o.role, "device": o.device, "point": o.point}
                   for o in loaded.config.outputs if not o.rooms or room in o.rooms}
        devices.update(o["device"] for o in outputs.values())
        points = {p: {"device": m.device, "room": m.room, "quantity": m.quantity,
                      "unit": m.unit}
                  for p, m in catalog_points(loaded).items() if m.device in devices}
        return RoomContext(devices, rules, outputs, points)

    def identity(self) -> dict[str, Any]:
        g = self.gateway
        return {"gateway": g.loaded.config.gateway.id, "site": g.loaded.config.gateway.site,
                "config": {"version": g.config_version, "sha256": g.config_sha256,
                           "file": g.loaded.path.name}}

    def health(self) -> dict[str, Any]:
        from gateway.status import health_data
        from gateway.uplink.status import link_text

        g = self.gateway
        uplink, depth = "not configured", None
        if g.uplink is not None:
            status = g.uplink.status()
            uplink = link_text(status, with_error=False)
            depth = status.outbox.depth
        return health_data(g.loaded, g.bus_loops, g.core.planner, g.driver,
                           g.clock.monotonic() - g.started_mono,
                           flood=g.core.alarms.flood.active, uplink=uplink,
                           outbox_depth=depth, config_version=g.config_version,
                           config_sha256=g.config_sha256)
