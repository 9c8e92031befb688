"""The safety core: samples → rules → alarms → wanted outputs. No I/O but the alarm journal.

The daemon runs it on the event loop (and drives real coils with what it wants); drills run it
on a manual clock. Nothing here waits on the network: an alarm and its local actions depend
only on the samples of this gateway's own buses.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.actions.planner import Demand, OutputPlanner
from gateway.alarms.events import AlarmEvent, AlarmView
from gateway.alarms.journal import Journal
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import Clock
from gateway.config.loader import LoadedConfig
from gateway.field.sample import Sample
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from gateway.rules.model import RulePack

if TYPE_CHECKING:
    from gateway.flashing.trial import TrialHold  # issue 9

OUTPUT_FAILURE_RULE = "actions.output_failure"


def demand_of(view: AlarmView) -> Demand | None:
    """What one alarm asks of the outputs; None when it asks nothing (normal or overlaid)."""
    if not view.annunciated or not view.actions:
        return None
    return Demand(alarm=str(view.key), roles=view.actions, room=view.room,
                  active=view.demands_actions, unacknowledged=view.state.unacknowledged)


class SafetyCore:
    def __init__(self, loaded: LoadedConfig, clock: Clock, journal_path: Path | str,
                 *, rules_dir: Path | None = None,
                 packs: dict[str, RulePack] | None = None) -> None:
        cfg = loaded.config
        self.loaded = loaded
        self.clock = clock
        if packs is None:
            ids = list(cfg.rules.packs) if cfg.rules.packs is not None else None
            packs = load_rule_packs(rules_dir or default_rules_dir(), ids)
        self.engine = RuleEngine(packs, loaded, clock,
                                 ParameterOverrides.from_section(cfg.rules))
        settings = cfg.alarms
        self.journal = Journal(journal_path, clock=clock, retention_days=settings.retention_days)
        self.alarms = AlarmManager(self.journal, clock, chatter_count=settings.chatter_count,
                                   chatter_window=settings.chatter_window,
                                   chatter_hold=settings.chatter_hold,
                                   flood_count=settings.flood_count,
                                   flood_window=settings.flood_window)
        rooms = {d.id: d.room for d in cfg.devices}
        self.planner = OutputPlanner(cfg.outputs, cfg.interlocks, rooms, clock)
        self.outputs = {o.id: o for o in cfg.outputs}
        self.wanted: dict[str, bool] = {o: False for o in self.outputs}

    def ingest(self, batch: list[Sample]) -> None:
        self.engine.on_samples(batch)

    def step(self, extra: Iterable[Evaluation] = (),
             trial: TrialHold | None = None) -> list[AlarmEvent]:
        """Evaluate every rule, run the alarm lifecycle, plan the outputs. `trial`: a config
        on trial holds its own trouble alarms (gateway.flashing.trial)."""
        evaluations = self.engine.evaluate()
        extra = list(extra)
        batch = [*evaluations, *extra] if extra else evaluations
        if trial is not None:  # issue 9: the trial hold
            batch = trial.admit(batch, self.alarms, self.engine.packs)
        events = self.alarms.observe(batch)
        events.extend(self.alarms.tick())
        self.plan_outputs()
        return events

    def plan_outputs(self) -> dict[str, bool]:
        demands = [d for d in map(demand_of, self.alarms.active()) if d is not None]
        self.wanted = self.planner.plan(demands)
        return self.wanted

    def output_failures(self, failed: dict[str, str | None], now_ns: int) -> list[Evaluation]:
        """Alarms of outputs whose last write failed (`failed`: output id → error or None)."""
        evaluations = []
        for output_id, error in failed.items():
            output = self.outputs[output_id]
            rooms = sorted(r for r in self.planner.rooms.get(output_id, set()) if r)
            evaluations.append(Evaluation(
                rule=OUTPUT_FAILURE_RULE, subject=output_id, active=error is not None,
                value=error, severity=Severity.MAJOR, ts=now_ns,
                title=f"Alarm output {output_id} ({output.role}) does not respond",
                room=rooms[0] if rooms else None))
        return evaluations

    def close(self) -> None:
        self.alarms.close()
