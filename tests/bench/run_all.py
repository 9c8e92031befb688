"""`make bench`: run every benchmark and print its figures (a table and a JSON line each)."""

from __future__ import annotations

from tests.bench import (
    bench_acquisition,
    bench_alarm_latency,
    bench_alarms,
    bench_compiled,  # issue 15: the rate windows compiled with mypyc, a probe
    bench_fleet,
    bench_imports,
    bench_ingest,
    bench_outbox,
    bench_poll_cost,  # issue 15: the field layer's cost per poll at p200f, in process
    bench_process,
    bench_publish,
    bench_recorder,  # issue 12
    bench_replay,
    bench_rules,
    bench_rules_round,  # issue 15: rule rounds on bench_process's sites, in process
    bench_sample_path,  # issue 15: the sample path outside the rules, in process
)


def main() -> None:
    bench_acquisition.main()
    bench_sample_path.main()
    bench_poll_cost.main()
    bench_rules.main()
    bench_rules_round.main()
    bench_compiled.main()
    bench_alarms.main()
    bench_outbox.main()
    bench_publish.main()
    bench_replay.main()
    bench_recorder.main()  # issue 12: flight-recorder memory and CPU
    bench_ingest.main()
    bench_alarm_latency.main(trials=100)
    bench_imports.main()
    bench_process.main()
    bench_fleet.main()  # issue 13: the fleet simulation (several minutes)


if __name__ == "__main__":
    main()
