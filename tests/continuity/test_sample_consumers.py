"""A poll's samples go to the rules, the flight recorder, the uplink and any other sink; one
that raises (a bug) costs only itself the batch (gateway.fanout)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.field.sample import Quality, Sample
from tests.ops.conftest import SITE


async def test_a_consumer_that_raises_costs_only_itself_the_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    gw = Gateway(load_gateway_config(SITE), state_dir=tmp_path / "state", clock=clock,
                 panel_port=0)
    try:
        assert gw.recording.recorder is not None
        seen: list[list[Sample]] = []
        gw.extra_sinks.append(seen.append)

        def broken(_batch: list[Sample]) -> None:
            raise RuntimeError("a bug in the rules' intake")

        monkeypatch.setattr(gw.core, "ingest", broken)
        caplog.set_level(logging.ERROR, logger="roomwarden")
        for i in range(12):
            batch = [Sample("th-1.temperature", 20.0 + i, clock.now_ns(), Quality.GOOD)]
            gw._on_samples(batch)
            clock.advance(1.0)
        assert gw.latest.latest["th-1.temperature"].value == 31.0
        assert [s.value for s in gw.recording.recorder.samples("th-1.temperature")] == [
            20.0 + i for i in range(12)]
        assert len(seen) == 12
        assert gw.evaluator.owed_since is not None  # a round is owed all the same
        assert gw.fanout.failures == {"rules": 12}
        logged = [r for r in caplog.records if "sample_consumer_failed" in r.getMessage()]
        assert [r.args[1] for r in logged if isinstance(r.args, tuple)] == [1, 10]
        assert logged[0].exc_info is not None
    finally:
        gw.core.close()
