"""Alarm manager cost: observe() with 3,000 evaluations per tick, unchanged and 1 % changing.

Run: `.venv/bin/python -m tests.bench.bench_alarms` (prints a table and one JSON line)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from gateway.alarms.journal import Journal
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock
from tests.bench.common import emit_json, print_table

ALARMS = 3_000
TICKS = 200


def _evaluations(active: set[int], ts: int) -> list[Evaluation]:
    return [Evaluation(rule=f"rule{i % 30}", subject=f"dev{i // 30}.p{i % 30}",
                       active=i in active, value=float(i), severity=Severity.MINOR, ts=ts,
                       title=f"alarm {i}", room=f"room{i // 300}", actions=("exhaust_fan",))
            for i in range(ALARMS)]


def _run(changing: int, workdir: Path) -> float:
    """Mean seconds per observe() over TICKS ticks with `changing` conditions flipping each."""
    clock = ManualClock()
    manager = AlarmManager(Journal(workdir / f"bench-{changing}.sqlite", clock=clock), clock,
                           flood_count=10**9)
    active: set[int] = set()
    manager.observe(_evaluations(active, clock.now_ns()))
    batches = []
    for tick in range(TICKS):  # prepared ahead: the rules' cost is not measured here
        for j in range(changing):
            i = (tick * changing + j) * 7 % ALARMS
            active.symmetric_difference_update({i})
        batches.append(_evaluations(active, clock.now_ns() + tick))
    elapsed = 0.0
    for batch in batches:
        clock.advance(1.0)
        start = time.perf_counter()
        manager.observe(batch)
        elapsed += time.perf_counter() - start
    manager.close()
    return elapsed / TICKS


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        quiet = _run(0, Path(tmp))
        busy = _run(ALARMS // 100, Path(tmp))
    print_table(f"alarm manager, {ALARMS} evaluations per observe()", [
        ("no changes: ms per observe", f"{quiet * 1e3:.3f}", "target < 5 ms on a Pi"),
        ("1 % changing: ms per observe", f"{busy * 1e3:.3f}", "incl. one SQLite commit"),
    ])
    emit_json("alarms", {"evaluations": ALARMS, "ticks": TICKS,
                         "observe_ms_unchanged": round(quiet * 1e3, 4),
                         "observe_ms_1pct_changing": round(busy * 1e3, 4)})


if __name__ == "__main__":
    main()
