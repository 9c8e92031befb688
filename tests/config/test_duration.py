from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.duration import format_duration, parse_duration
from gateway.config.loader import ConfigErrors, load_gateway_config


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), (3, 3.0),
    ("10 min", 600.0)])
def test_parses(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5", "5 sec", "-1s", "s", "", True, None, [1],
                                 float("inf"), float("nan"), "745h", 10**9])
def test_rejects_with_a_reason(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@given(st.integers(0, 10**6))
def test_format_round_trips(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("timeout", "300m", "buses[0].timeout: 5h is longer than the limit of 10s"),
    ("timeout", ".inf", "buses[0].timeout: a duration must be a finite number of seconds"),
    ("timeout", "1000h", "buses[0].timeout: a duration of 1000 h is longer than any"),
    ("health_timeout", ".nan", "flashing.health_timeout: a duration must be a finite"),
    ("health_timeout", "1h", "flashing.health_timeout: 1h is longer than the limit of 10m")])
def test_a_config_with_an_absurd_wait_is_refused(tmp_path: Path, key: str, value: str,
                                                 reason: str) -> None:
    """The config audit: `timeout: 300m` (meant: 300ms) passed check and the trial, and one
    dead device then held its whole RS-485 bus — both smoke detectors in alarm, no siren —
    while the bus's watchdog limit was 7.5 days; `health_timeout: .inf` made an apply that
    never ended, holding real alarms as trial trouble. Both are refused with the field."""
    text = (REPO / "firmware_configs" / "telecom_equipment_room.yaml").read_text()
    text, n = re.subn(rf"(\n\s+{key}: )[^,}}\n#]+", rf"\g<1>{value} ", text, count=1)
    assert n == 1
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(path)
    assert reason in str(caught.value)
