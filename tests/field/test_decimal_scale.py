"""A register with a decimal scale (0.1, 0.01, ...) reads as the decimal it stands for: 2283 at
scale 0.01 is 22.83, not 22.830000000000002 (what raw x 0.01 gives for about one value in
seven), in both decoders, so telemetry and the flight recorder carry the short number."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.field.points import DECIMAL_DIVISORS, scaled


@given(raw=st.integers(min_value=-2**31, max_value=2**31 - 1), k=st.integers(1, 4))
def test_a_decimal_scale_gives_the_decimal(raw: int, k: int) -> None:
    scale = float(f"1e-{k}")
    value = scaled(raw, scale, 0.0)
    assert value == float(f"{raw / 10 ** k:.{k}f}")
    assert len(repr(value).lstrip("-").replace(".", "").lstrip("0")) <= len(str(abs(raw))) + 1


@given(raw=st.integers(min_value=-2**15, max_value=2**15 - 1),
       scale=st.sampled_from([0.5, 2.0, 0.25, 3.0, 0.2]),
       offset=st.sampled_from([0.0, -40.0, 273.15]))
def test_other_scales_multiply(raw: int, scale: float, offset: float) -> None:
    assert scale not in DECIMAL_DIVISORS
    assert scaled(raw, scale, offset) == raw * scale + offset


def test_the_known_case() -> None:
    assert 2283 * 0.01 != 22.83
    assert scaled(2283, 0.01, 0.0) == 22.83
    assert repr(scaled(2283, 0.01, 0.0)) == "22.83"
