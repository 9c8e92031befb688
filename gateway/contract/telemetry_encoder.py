"""The gateway's telemetry bytes, written without the `TelemetryBatch` model (the contract's
rules checked by hand, the model's exact encoding): `TelemetryEncoder`."""

from __future__ import annotations

from itertools import groupby

from gateway.contract.enums import Quality
from gateway.contract.jsontext import float_texts, to_json
from gateway.contract.sample import Sample
from gateway.contract.sample import Value as SampleValue
from gateway.contract.vocab import (
    HASH,
    ID,
    MAX_BATCH_ROWS,
    MAX_PAYLOAD_BYTES,
    POINT_ID,
    TEXT_VALUE,
    ContractError,
)
from gateway.records import dataclass

_WIRE_QUALITY = {q: q.value for q in Quality}
_LIMIT = 2**63
_INT = frozenset({int})
_PLAIN = frozenset({float, int, bool, str, type(None)})
_TEXT_MAX = TEXT_VALUE.max_length
MAX_KNOWN_POINTS = 100_000
"""Point ids `TelemetryEncoder` remembers as valid, with their rows' JSON head (a config's
points; beyond: checked again at each batch, which is only slower)."""

_ENVELOPE = 1024
"""Bytes `payload` may add to a batch's rows at most (ids ≤ 64 characters, catalog, numbers)."""
_GOOD_TEXT = Quality.GOOD.value
_GOOD_TAIL = b',"' + _GOOD_TEXT.encode() + b'"]'
_SUMMED = frozenset({float, bool})
_SPLICED = frozenset({float, int, bool, type(None)})
"""Values whose JSON has no comma: a run of them is split on the commas of `to_json`'s array."""
_FLOATS = frozenset({float})
"""A run of floats only: their texts from `jsontext.float_texts`' cache."""
Row = tuple[str, SampleValue, int, str]
_Columns = tuple[int, tuple[str, ...], tuple[SampleValue, ...], tuple[int, ...], list[str],
                 set[type]]


@dataclass(slots=True)
class EncodedRows:
    """A batch's rows already in wire form (`TelemetryEncoder.prepare`, grown by `extend`):
    `t0` and the JSON of the `samples` array's rows (`parts`, each a run of rows without the
    brackets); the numbers and the envelope are added by `TelemetryEncoder.payload` when the
    outbox gives them. `points`: the point ids it holds (a batch holds each at most once)."""

    t0: int
    parts: list[bytes]
    count: int
    size: int
    points: set[str]


def _offsets(stamps: tuple[int, ...], t0: int) -> list[int]:
    """Each row's `dt` (one reply's samples share their time: then one subtraction)."""
    first = stamps[0]
    if stamps.count(first) == len(stamps):
        return [first - t0] * len(stamps)
    return [ts - t0 for ts in stamps]


class TelemetryEncoder:
    """Encodes a gateway's telemetry batches without `TelemetryBatch` — no instance, and no
    validator or serializer built (issue 15: a running gateway builds none): the bytes are
    exactly `encode(TelemetryBatch.from_samples(...))`'s (gateway.contract.jsontext's
    `to_json`, pydantic-core's JSON without pydantic-core, over the same fields in the same
    order). The model's checks are done by hand (the
    contract's `TextRule`s) once where they cannot change — site, gateway and catalog when
    made, each point id the first time it is seen — and per batch only as plain type and
    range tests over its columns (C-level passes: `zip`, `map(type, …)`, `min`/`max`, `sum`,
    set containment; no Python statement per sample; a string value's length and encoding
    checked per string). The model's own validator (`t0 + dt` below 2**63) holds by
    construction: `dt` is `ts - t0` and every `ts` is checked below 2**63. A batch that
    breaks the contract (an integer beyond 64 bits, a string over 200 characters or with a
    lone surrogate, a timestamp out of range, a point id not valid) gets `None` from `rows`,
    and the caller builds it through the model, which says what is wrong.

    `prepare` turns a batch into its rows' JSON once (on the event loop, while the samples are
    fresh in the cache), `extend` appends a later poll's rows to it (their `dt` counted from
    its `t0`, so the JSON is spliced, never re-encoded); `payload` adds the envelope when the
    sequence numbers are known (the writer thread): the same bytes as the model's encoding of
    all those samples in one batch. tests/uplink/test_telemetry_encoder.py checks the bytes
    and the rows against the per-sample reference with hypothesis. The encoder's state (the
    known points) is only added to: `rows`, `prepare` and `extend` belong to one thread,
    `payload` and `encode` to any."""

    def __init__(self, *, site: str, gateway: str, catalog: str | None) -> None:
        """ContractError if the site, gateway or catalog break the contract."""
        ID.check("site", site)
        ID.check("gateway", gateway)
        if catalog is not None:
            HASH.check("catalog", catalog)
        self.site, self.gateway, self.catalog = site, gateway, catalog
        self._heads: dict[str, bytes] = {}
        """Each point id seen valid → its rows' JSON head, `,["<point>",`. Per point, not per
        batch: reported by exception, a poll's batch holds the points that changed, a
        different set almost every time (a cache by batch missed at every poll of the
        2,000-point benchmark and wrote every head again: ~3,000 instructions a point)."""

    def rows(self, samples: list[Sample], produced: int, base: int | None = None
             ) -> tuple[int, list[Row]] | None:
        """(t0, wire rows) of a batch made at `produced` that the fast path can encode, else
        None. `base`: the t0 to count `dt` from (a batch these rows join), None if it is older
        than a sample (else t0 is the oldest sample's time)."""
        cols = self._columns(samples, produced, base)
        if cols is None:
            return None
        t0, points, values, stamps, wire, _kinds = cols
        return t0, list(zip(points, values, _offsets(stamps, t0), wire, strict=True))

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
                # (booleans add 0 or 1: a poll's floats and its `online` summed as they are)
                floats = values if _SUMMED.issuperset(kinds) else [v for v in values
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
            heads = self._heads
            if not all(map(heads.__contains__, points)):
                for point in points:
                    if point not in heads and self._learn(point) is None:
                        return None
        except (TypeError, ValueError, KeyError):  # not 4-tuples, not a quality, unhashable
            return None
        return t0, points, values, stamps, wire, kinds

    @staticmethod
    def _texts_fit(values: tuple[SampleValue, ...]) -> bool:
        """The string values are what the contract takes: at most 200 characters, UTF-8."""
        texts = [v for v in values if type(v) is str]
        if max(map(len, texts)) > _TEXT_MAX:
            return False
        if not all(map(str.isascii, texts)):
            try:
                "".join(texts).encode()
            except UnicodeEncodeError:  # a lone surrogate
                return False
        return True

    def _part(self, cols: _Columns) -> bytes:
        """The rows' JSON without the brackets (`to_json`: the C encoder's `repr` of floats,
        respelled as pydantic-core writes exponents; far cheaper than joined by hand)."""
        t0, points, values, stamps, wire, kinds = cols
        if _SPLICED.issuperset(kinds) and wire.count(_GOOD_TEXT) == len(wire):
            return self._spliced(points, values, stamps, t0, kinds == _FLOATS)
        return to_json(list(zip(points, values, _offsets(stamps, t0), wire, strict=True)))[1:-1]

    def _spliced(self, points: tuple[str, ...], values: tuple[SampleValue, ...],
                 stamps: tuple[int, ...], t0: int, floats: bool = False) -> bytes:
        """`_part` of good numbers, booleans and nulls: the rows' JSON made of the values'
        (one `to_json` of the values alone, split on its commas), each point's head kept
        per point and a tail per `dt`. Issue 15: ~850 instructions a row less
        than `to_json` of the row tuples (their strings escaped, the tuples walked)."""
        heads: list[bytes | None] = list(map(self._heads.get, points))
        if None in heads:  # (points past MAX_KNOWN_POINTS: valid, not remembered)
            heads = [head or self._learn(p) for head, p in zip(heads, points, strict=True)]
        n = len(points)
        parts: list[bytes] = [b""] * (3 * n)
        parts[0::3] = heads  # type: ignore[assignment]
        parts[1::3] = (float_texts(values) if floats  # type: ignore[arg-type]
                       else to_json(values)[1:-1].split(b","))
        first = stamps[0]
        if stamps.count(first) == n:  # one reply's samples: one time
            parts[2::3] = [b"," + to_json(first - t0) + _GOOD_TAIL] * n
        else:  # a run of rows per time (the stamps are ints, `_columns` checked)
            tails: list[bytes] = []
            for ts, run in groupby(stamps):
                tails += [b"," + to_json(ts - t0) + _GOOD_TAIL] * len(list(run))
            parts[2::3] = tails
        return b"".join(parts)[1:]  # (the first head's comma)

    def prepare(self, samples: list[Sample], produced: int) -> EncodedRows | None:
        """The batch's rows encoded once (None: the model must build it, see `rows`)."""
        cols = self._columns(samples, produced, None)
        if cols is None:
            return None
        part = self._part(cols)
        if len(part) > MAX_PAYLOAD_BYTES - _ENVELOPE:
            return None  # too large: the model path says so
        return EncodedRows(cols[0], [part], len(cols[1]), len(part), set(cols[1]))

    def extend(self, encoded: EncodedRows, samples: list[Sample], produced: int) -> bool:
        """Append a poll's samples to `encoded` (their `dt` from its `t0`); False, and
        `encoded` unchanged, if they cannot join it: a point it holds already, a sample older
        than its `t0`, more than MAX_BATCH_ROWS rows or the payload limit together, or
        anything `rows` leaves to the model."""
        if encoded.count + len(samples) > MAX_BATCH_ROWS:
            return False
        cols = self._columns(samples, produced, encoded.t0)
        if cols is None or not encoded.points.isdisjoint(cols[1]):
            return False
        part = self._part(cols)
        if encoded.size + 1 + len(part) > MAX_PAYLOAD_BYTES - _ENVELOPE:
            return False
        encoded.parts.append(part)
        encoded.count += len(cols[1])
        encoded.size += 1 + len(part)
        encoded.points.update(cols[1])
        return True

    def _learn(self, point: object) -> bytes | None:
        """`point`'s rows' JSON head if it is a valid point id (remembered, up to
        MAX_KNOWN_POINTS), else None."""
        try:
            valid = POINT_ID.check("point", point)
        except ContractError:
            return None
        head = b',["' + to_json(valid)[1:] + b","
        if len(self._heads) < MAX_KNOWN_POINTS:
            self._heads[valid] = head
        return head

    def encode(self, t0: int, rows: list[Row], *, seq: int, produced: int,
               stream: int | None = None, dseq: int | None = None) -> bytes:
        """The payload of a batch whose `rows` came from `rows()`. The numbers are copied in as
        given, as the committer's model path does (`seq`, `stream` and `dseq` come from the
        outbox's counters); ContractError only for a payload beyond MAX_PAYLOAD_BYTES."""
        part = to_json(rows)[1:-1]
        return self.payload(EncodedRows(t0, [part], len(rows), len(part), set()), seq=seq,
                            produced=produced, stream=stream, dseq=dseq)

    def payload(self, encoded: EncodedRows, *, seq: int, produced: int,
                stream: int | None = None, dseq: int | None = None) -> bytes:
        """The payload of a batch `prepare` encoded: the envelope (to_json of the model's
        fields before `samples`, in its order) with the rows' JSON spliced in last."""
        message: dict[str, object] = {"v": 1, "site": self.site, "gateway": self.gateway}
        if stream is not None:
            message["stream"], message["dseq"] = stream, dseq
        message["seq"], message["produced"] = seq, produced
        if self.catalog is not None:
            message["catalog"] = self.catalog
        message["t0"] = encoded.t0
        head = to_json(message)  # ends with the closing brace
        data = b"".join((head[:-1], b',"samples":[', b",".join(encoded.parts), b"]}"))
        if len(data) > MAX_PAYLOAD_BYTES:
            raise ContractError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        return data
