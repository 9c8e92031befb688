"""The telemetry encoder's spliced rows (`TelemetryEncoder._spliced`: each row's head kept per
point, the values' JSON split and spliced in) and its per-batch point check give the
same rows, bytes and answers as the encoder before them (kept below verbatim as the reference:
`_columns` and `_part` of 1ccba84), over polls that repeat their points as a bus loop's do —
good numbers, booleans and nulls (the spliced path) and anything else (the old path)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from gateway.contract.base import MAX_BATCH_ROWS
from gateway.contract.enums import Quality
from gateway.contract.sample import Sample
from gateway.contract.sample import Value as SampleValue
from gateway.contract.telemetry_encoder import (
    _GOOD_TEXT,
    _INT,
    _LIMIT,
    _PLAIN,
    _WIRE_QUALITY,
    EncodedRows,
    TelemetryEncoder,
    _Columns,
    _offsets,
)


class _Before(TelemetryEncoder):
    """The encoder with its `_columns` and `_part` as they were (verbatim)."""

    def _columns(self, samples: list[Sample], produced: int, base: int | None) -> _Columns | None:
        """The batch as checked columns (t0, points, wire values, stamps, wire qualities,
        value types), or None for the model path."""
        if not samples or len(samples) > MAX_BATCH_ROWS or type(produced) is not int \
                or not 0 <= produced < _LIMIT:
            return None
        try:
            points, values, stamps, qualities = zip(*samples, strict=True)
            if not _INT.issuperset(map(type, stamps)):
                return None
            t0 = min(stamps)
            if t0 < 0 or max(stamps) >= _LIMIT:
                return None
            if base is not None:
                if base > t0:
                    return None
                t0 = base
            kinds = set(map(type, values))
            if not _PLAIN.issuperset(kinds):
                return None
            if int in kinds:
                ints = values if len(kinds) == 1 else [v for v in values if type(v) is int]
                if min(ints) < -_LIMIT or max(ints) >= _LIMIT:
                    return None
            if float in kinds:
                floats = values if len(kinds) == 1 else [v for v in values
                                                         if type(v) is float]
                total = sum(floats)
                if total - total != 0.0:  # a NaN or ±inf among them (or a sum beyond range)
                    values = tuple(None if type(v) is float and v - v != 0.0 else v
                                   for v in values)  # JSON has no NaN: null, as the model
                    kinds = set(map(type, values))
            if str in kinds and not self._texts_fit(values):
                return None
            n = len(qualities)
            wire: list[str] = [_GOOD_TEXT] * n if qualities.count(Quality.GOOD) == n \
                else list(map(_WIRE_QUALITY.__getitem__, qualities))
            known = self._heads  # (`_known` then, and `_learn` a bool: the same test)
            if not all(map(known.__contains__, points)):
                for point in points:
                    if point not in known and self._learn(point) is None:
                        return None
        except (TypeError, ValueError, KeyError):  # not 4-tuples, not a quality, unhashable
            return None
        return t0, points, values, stamps, wire, kinds

    def _part(self, cols: _Columns) -> bytes:  # (a staticmethod before: the same code)
        t0, points, values, stamps, wire, _kinds = cols
        return to_json(list(zip(points, values, _offsets(stamps, t0), wire, strict=True)))[1:-1]


numbers = st.one_of(
    st.floats(), st.sampled_from([0.1, 1e16, 1e-7, -0.0, 21.37, 5e-324, 1.7976931348623157e308,
                                  float("nan"), float("inf")]),
    st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none())
odd_values = st.text(max_size=5) | st.integers() | st.just("a,b")
points = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,12}", fullmatch=True) | st.sampled_from(
    ["", "not valid", "x" * 161])
qualities = st.sampled_from(Quality)


@st.composite
def polls(draw: st.DrawFn) -> list[tuple[list[Sample], int]]:
    """Polls of a few devices (each the same points in the same order every time, the ones
    of them that changed, or now and then others behind the same first point), their values
    mostly good numbers, in runs of one time each (a block read, then `online`)."""
    devices = draw(st.lists(st.lists(points, min_size=1, max_size=8), min_size=1, max_size=3))
    out: list[tuple[list[Sample], int]] = []
    clock = draw(st.integers(0, 2**62))
    for _ in range(draw(st.integers(1, 8))):
        device = list(devices[draw(st.integers(0, len(devices) - 1))])
        change = draw(st.integers(0, 9))
        if change == 0:
            device = [device[0], *draw(st.lists(points, max_size=4))]
        elif change < 4:  # reported by exception: the points that changed, in their order
            device = [p for p in device if draw(st.booleans())] or device[:1]
        good = draw(st.integers(0, 3)) > 0
        batch = []
        for point in device:
            clock += draw(st.sampled_from([0, 0, 0, 1, 1_000_000]))
            value: SampleValue = draw(numbers if draw(st.integers(0, 9)) else odd_values)
            batch.append(Sample(point, value, clock, Quality.GOOD if good else draw(qualities)))
        out.append((batch, clock + draw(st.integers(0, 5))))
    return out


def _same(a: EncodedRows | None, b: EncodedRows | None) -> None:
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert (a.t0, a.parts, a.count, a.size, a.points) == (
            b.t0, b.parts, b.count, b.size, b.points)


@settings(max_examples=500, deadline=None)
@given(runs=polls())
def test_prepare_extend_and_rows_are_the_encoders_before(
        runs: list[tuple[list[Sample], int]]) -> None:
    new = TelemetryEncoder(site="s1", gateway="g1", catalog=None)
    old = _Before(site="s1", gateway="g1", catalog=None)
    open_new: EncodedRows | None = None
    open_old: EncodedRows | None = None
    for batch, produced in runs:
        assert new.rows(batch, produced) == old.rows(batch, produced)
        if open_new is not None and open_old is not None:
            joined = new.extend(open_new, batch, produced)
            assert joined == old.extend(open_old, batch, produced)
            _same(open_new, open_old)
            if joined:
                continue
        open_new, open_old = new.prepare(batch, produced), old.prepare(batch, produced)
        _same(open_new, open_old)


def test_a_poll_of_floats_and_online_is_spliced() -> None:
    """The bus loop's batch — a block's floats, then `online` a moment later — takes the
    spliced path from its second poll: no `to_json` of the rows (the heads kept)."""
    encoder = TelemetryEncoder(site="s1", gateway="g1", catalog=None)
    points = [f"d.r{i}" for i in range(200)]
    for poll in range(2):
        batch = [Sample(p, 20.0 + i / 100 + poll, 10**18 + poll, Quality.GOOD)
                 for i, p in enumerate(points)] + [Sample("d.online", True, 10**18 + 5,
                                                          Quality.GOOD)]
        prepared = encoder.prepare(batch, 10**18 + 9)
        assert prepared is not None
        rows = encoder.rows(batch, 10**18 + 9)
        assert rows is not None and prepared.parts == [to_json(rows[1])[1:-1]]
    assert set(encoder._heads) == {*points, "d.online"}


def test_a_poll_reported_by_exception_writes_no_head_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The points of a later poll that changed — a different set at almost every poll — take
    their rows' heads from the encoder: `to_json` is not called per point (it was, for every
    head, whenever a batch's set of points differed from the one before)."""
    import gateway.contract.telemetry_encoder as module

    encoder = TelemetryEncoder(site="s1", gateway="g1", catalog=None)
    points = [f"d.r{i}" for i in range(200)]
    first = [Sample(p, 20.0 + i / 100, 10**18, Quality.GOOD) for i, p in enumerate(points)]
    assert encoder.prepare(first, 10**18 + 9) is not None
    calls: list[object] = []

    def counted(value: object) -> bytes:
        calls.append(value)
        return to_json(value)

    monkeypatch.setattr(module, "to_json", counted)
    for poll in range(1, 4):
        changed = [Sample(p, 20.0 + i / 100 + poll, 10**18 + poll, Quality.GOOD)
                   for i, p in enumerate(points) if (i + poll) % 3]  # two in three changed
        prepared = encoder.prepare(changed, 10**18 + 9 + poll)
        rows = encoder.rows(changed, 10**18 + 9 + poll)
        assert prepared is not None and rows is not None
        assert prepared.parts == [to_json(rows[1])[1:-1]]
    assert len(calls) <= 3 * 2, calls[:10]  # a poll: its new float texts, its `dt`
