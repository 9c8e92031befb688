"""The rules benchmark runs (briefly) and a quiet synthetic site raises nothing."""

from __future__ import annotations

import pytest

from tests.bench import bench_rules


@pytest.mark.slow
def test_bench_rules_runs(capsys: pytest.CaptureFixture[str]) -> None:
    figures = bench_rules.main(seconds=5)
    assert figures["points"] >= 2000
    assert figures["active_at_end"] == 0
    assert '"bench": "rules"' in capsys.readouterr().out
