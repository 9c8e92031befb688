"""TelemetryEncoder: the committer's fast path gives exactly the bytes of the model's encoding,
takes every batch of plain numbers, booleans and nulls, and never accepts what the model
refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contract import wire as c
from gateway.contract.telemetry import TelemetryEncoder
from gateway.field.sample import Quality, Sample
from tests.uplink.strategies import ids

good_points = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True)
any_points = good_points | st.text(max_size=12) | st.just("x" * 161)
plain_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.1, 1e16, 1e-7, -0.0, 21.37, 5e-324, 1.7976931348623157e308]))
any_values = plain_values | st.integers() | st.text(max_size=5) | st.text(min_size=201,
                                                                          max_size=202)
any_ts = st.integers(0, 2**62) | st.integers(-5, 2**64)
catalogs = st.none() | st.from_regex(r"[0-9a-f]{16}", fullmatch=True)
numbers = st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1)) | st.tuples(
    st.integers(-1, 2**64), st.integers(-1, 2**64))
delivery = st.just((None, None)) | st.tuples(st.integers(1, 2**63 - 1),
                                             st.integers(1, 2**63 - 1))


def _model_bytes(site: str, gateway: str, catalog: str | None, batch: list[Sample], seq: int,
                 produced: int, stream: int | None, dseq: int | None) -> bytes:
    update: dict[str, Any] = {"seq": seq}
    if stream is not None:
        update.update(stream=stream, dseq=dseq)
    model = c.TelemetryBatch.from_samples(site=site, gateway=gateway, seq=0, produced=produced,
                                          samples=batch, catalog=catalog)
    return c.encode(model.model_copy(update=update))


@settings(max_examples=400, deadline=None)
@given(site=ids, gateway=ids, catalog=catalogs,
       batch=st.lists(st.builds(Sample, good_points, plain_values, st.integers(0, 2**62),
                                st.sampled_from(Quality)), min_size=1, max_size=20),
       seq=st.integers(0, 2**63 - 1), produced=st.integers(0, 2**63 - 1), dl=delivery)
def test_plain_batches_take_the_fast_path_with_the_models_bytes(
        site: str, gateway: str, catalog: str | None, batch: list[Sample], seq: int,
        produced: int, dl: tuple[int | None, int | None]) -> None:
    encoder = TelemetryEncoder(site=site, gateway=gateway, catalog=catalog)
    fast = encoder.rows(batch, produced)
    assert fast is not None
    payload = encoder.encode(*fast, seq=seq, produced=produced, stream=dl[0], dseq=dl[1])
    assert payload == _model_bytes(site, gateway, catalog, batch, seq, produced, *dl)


@settings(max_examples=400, deadline=None)
@given(batch=st.lists(st.builds(Sample, any_points, any_values, any_ts,
                                st.sampled_from(Quality)), min_size=0, max_size=6),
       nums=numbers, dl=delivery)
def test_the_fast_path_accepts_nothing_the_model_refuses(
        batch: list[Sample], nums: tuple[int, int], dl: tuple[int | None, int | None]) -> None:
    encoder = TelemetryEncoder(site="s1", gateway="g1", catalog="0123456789abcdef")
    seq, produced = nums
    try:
        expected = _model_bytes("s1", "g1", "0123456789abcdef", batch, seq, produced, *dl)
    except (c.ContractError, ValueError):
        expected = None
    fast = encoder.rows(batch, produced)
    if fast is None:
        return  # the committer builds it through the model, as before
    assert expected is not None
    assert encoder.encode(*fast, seq=seq, produced=produced, stream=dl[0],
                          dseq=dl[1]) == expected


def test_what_the_fast_path_leaves_to_the_model() -> None:
    encoder = TelemetryEncoder(site="s1", gateway="g1", catalog=None)
    ok = Sample("d.t", 21.5, 10, Quality.GOOD)
    assert encoder.rows([ok], 20) == (10, [("d.t", 21.5, 0, "good")])
    assert encoder.rows([ok, Sample("d.mode", "online", 11, Quality.GOOD)], 20) is None  # text
    assert encoder.rows([Sample("d.x", 2**64, 10, Quality.GOOD)], 20) is None  # > 64 bits
    assert encoder.rows([Sample("bad id", 1, 10, Quality.GOOD)], 20) is None
    assert encoder.rows([Sample("d.t", 1, -1, Quality.GOOD)], 20) is None
    assert encoder.rows([ok], -1) is None
    assert encoder.rows([], 20) is None
    nan = encoder.rows([Sample("d.t", float("nan"), 12, Quality.INVALID)], 20)
    assert nan == (12, [("d.t", None, 0, "invalid")])  # JSON has no NaN: null, as the model
    with pytest.raises(c.ContractError):
        TelemetryEncoder(site="not a site", gateway="g1", catalog=None)
