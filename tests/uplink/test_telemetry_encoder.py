"""TelemetryEncoder: the committer's fast path gives exactly the bytes of the model's encoding,
takes every batch of plain numbers, booleans, strings and nulls the contract takes (no
`TelemetryBatch` validator built for one, issue 15), and never accepts what the model
refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contract import wire as c
from gateway.contract.telemetry_encoder import TelemetryEncoder
from gateway.field.sample import Quality, Sample
from tests.uplink.strategies import ids

good_points = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True)
any_points = good_points | st.text(max_size=12) | st.just("x" * 161)
plain_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.1, 1e16, 1e-7, -0.0, 21.37, 5e-324, 1.7976931348623157e308]),
    st.text(max_size=12), st.sampled_from(["", "é\u2028\"\\\x00\x7f😀", "x" * 200]))
any_values = plain_values | st.integers() | st.text(min_size=201, max_size=202) | st.text(
    st.characters(exclude_categories=()), max_size=4)  # lone surrogates too
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
    # what the event loop prepares and the writer completes: the same bytes
    prepared = encoder.prepare(batch, produced)
    assert prepared is not None and prepared.count == len(batch)
    assert encoder.payload(prepared, seq=seq, produced=produced, stream=dl[0],
                           dseq=dl[1]) == payload


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
    assert encoder.rows([ok, Sample("d.mode", "online", 11, Quality.GOOD)], 20) == (
        10, [("d.t", 21.5, 0, "good"), ("d.mode", "online", 1, "good")])  # text: fast too
    assert encoder.rows([ok, Sample("d.mode", "x" * 201, 11, Quality.GOOD)], 20) is None
    assert encoder.rows([Sample("d.mode", "\ud800", 11, Quality.GOOD)], 20) is None
    assert encoder.rows([Sample("d.x", 2**64, 10, Quality.GOOD)], 20) is None  # > 64 bits
    assert encoder.rows([Sample("bad id", 1, 10, Quality.GOOD)], 20) is None
    assert encoder.rows([Sample("d.t", 1, -1, Quality.GOOD)], 20) is None
    assert encoder.rows([ok], -1) is None
    assert encoder.rows([], 20) is None
    nan = encoder.rows([Sample("d.t", float("nan"), 12, Quality.INVALID)], 20)
    assert nan == (12, [("d.t", None, 0, "invalid")])  # JSON has no NaN: null, as the model
    with pytest.raises(c.ContractError):
        TelemetryEncoder(site="not a site", gateway="g1", catalog=None)


_LIMIT = 2**63


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _reference_rows(encoder: TelemetryEncoder, samples: list[Sample], produced: int
                    ) -> tuple[int, list[tuple[Any, ...]]] | None:
    """The encoder's rows as it made them before its checks became per column: one sample
    at a time (the behaviour the column checks must keep)."""
    if not samples or len(samples) > c.MAX_BATCH_ROWS or type(produced) is not int \
            or not 0 <= produced < _LIMIT:
        return None
    try:
        t0 = min(s[2] for s in samples)
        if t0 < 0 or max(s[2] for s in samples) >= _LIMIT:
            return None
    except TypeError:
        return None
    wire = {q: q.value for q in Quality}
    rows: list[tuple[Any, ...]] = []
    for point, value, ts, quality in samples:
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # type: ignore[operator]
                value = None
        elif kind is int:
            if not -_LIMIT <= value < _LIMIT:  # type: ignore[operator]
                return None
        elif kind is str and isinstance(value, str):
            if len(value) > 200 or not _utf8(value):
                return None
        elif value is not None and kind is not bool:
            return None
        if point not in encoder._heads and encoder._learn(point) is None:
            return None
        if wire.get(quality) is None or type(ts) is not int:
            return None
        rows.append((point, value, ts - t0, wire[quality]))
    return t0, rows


@settings(max_examples=500, deadline=None)
@given(batch=st.lists(st.builds(Sample, any_points, any_values | plain_values, any_ts,
                                st.sampled_from(Quality)), min_size=0, max_size=8),
       produced=st.integers(-1, 2**64))
def test_the_column_checks_give_the_rows_of_the_per_sample_reference(
        batch: list[Sample], produced: int) -> None:
    reference = TelemetryEncoder(site="s1", gateway="g1", catalog=None)
    encoder = TelemetryEncoder(site="s1", gateway="g1", catalog=None)
    expected = _reference_rows(reference, batch, produced)
    got = encoder.rows(batch, produced)
    assert got == expected
    if got is not None:  # the same types too (a NaN is None, a bool stays a bool)
        assert [tuple(map(type, row)) for row in got[1]] == \
            [tuple(map(type, row)) for row in expected[1]]  # type: ignore[index]


def test_odd_samples_are_left_to_the_model_not_raised() -> None:
    encoder = TelemetryEncoder(site="s1", gateway="g1", catalog=None)
    odd: list[Any] = [[Sample("d.t", 1.0, 10, Quality.GOOD), ("d.t", 1.0, 10)],  # 3 fields
                      [("d.t", 1.0, 10, "nonsense")], [(["d.t"], 1.0, 10, Quality.GOOD)],
                      [("d.t", 1.0, 10.0, Quality.GOOD)], [("d.t", 1.0, True, Quality.GOOD)],
                      [("d.t", [1.0], 10, Quality.GOOD)], [("d.t", 1.0, 10, ["good"])]]
    for batch in odd:
        assert encoder.rows(batch, 20) is None
        assert encoder.prepare(batch, 20) is None
    text_quality: list[Any] = [("d.t", 1.0, 10, "good")]
    plain = encoder.rows(text_quality, 20)  # a quality given as its text
    assert plain == (10, [("d.t", 1.0, 0, "good")])


@settings(max_examples=300, deadline=None)
@given(catalog=catalogs,
       polls=st.lists(st.lists(st.tuples(plain_values, st.integers(0, 10**12),
                                         st.sampled_from(Quality)), min_size=1, max_size=6),
                      min_size=1, max_size=6),
       seq=st.integers(0, 2**63 - 1), produced=st.integers(0, 2**63 - 1), dl=delivery)
def test_polls_joined_by_extend_give_the_models_bytes_of_one_batch(
        catalog: str | None, polls: list[list[tuple[Any, int, Quality]]], seq: int,
        produced: int, dl: tuple[int | None, int | None]) -> None:
    """Polls of distinct points joined into one message (`extend`, as the committer does
    within a commit interval) are exactly the model's encoding of all their samples in one
    batch; a poll that cannot join (older than the batch's t0, or a point it holds) leaves
    it unchanged."""
    encoder = TelemetryEncoder(site="s1", gateway="g1", catalog=catalog)
    batches = [[Sample(f"d{d}.p{i}", value, ts, quality)
                for i, (value, ts, quality) in enumerate(poll)] for d, poll in enumerate(polls)]
    joined = encoder.prepare(batches[0], produced)
    assert joined is not None
    members = list(batches[0])
    for batch in batches[1:]:
        before = (joined.t0, list(joined.parts), joined.count, joined.size, set(joined.points))
        fits = min(s.ts for s in batch) >= joined.t0
        assert encoder.extend(joined, batch, produced) == fits
        if fits:
            members += batch
        else:
            assert (joined.t0, joined.parts, joined.count, joined.size, joined.points) == before
    assert joined.count == len(members)
    payload = encoder.payload(joined, seq=seq, produced=produced, stream=dl[0], dseq=dl[1])
    assert payload == _model_bytes("s1", "g1", catalog, members, seq, produced, *dl)
    assert not encoder.extend(joined, batches[0][:1], produced)  # a point it holds already


def test_extend_stops_at_the_row_limit() -> None:
    encoder = TelemetryEncoder(site="s1", gateway="g1", catalog=None)
    joined = encoder.prepare([Sample(f"a.p{i}", 1.0, 5, Quality.GOOD)
                              for i in range(c.MAX_BATCH_ROWS - 1)], 5)
    assert joined is not None
    assert not encoder.extend(joined, [Sample("b.x", 1.0, 5, Quality.GOOD)] * 2, 5)
    assert encoder.extend(joined, [Sample("b.x", 1.0, 5, Quality.GOOD)], 5)
    assert joined.count == c.MAX_BATCH_ROWS
    assert not encoder.extend(joined, [Sample("b.y", "text", 5, Quality.GOOD)], 5)
