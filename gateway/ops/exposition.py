"""Prometheus's text exposition format, version 0.0.4, written by the gateway itself.

The metric families `gateway.ops.collector` builds — counter, gauge, summary, histogram, info —
with the constructors and `add_metric` of prometheus_client's families of the same names, and
`render`, which writes them as prometheus_client's `generate_latest` does, byte for byte: a
`# HELP` and a `# TYPE` line per family, a counter's samples with `_total`, an info family as a
gauge `<name>_info` of value 1, labels sorted by name, HELP text with backslash and newline
escaped, label values with backslash, double quote and newline escaped, and values as
prometheus_client writes them (`+Inf`, `-Inf`, `NaN`, `5.0`, Go's exponent for positive
values from a million up: `1.5e+06`).

Why not prometheus_client in the gateway: importing any part of it runs its package, which
brings its HTTP and WSGI servers, `email`, `wsgiref`, `urllib` … — 2.8 MiB of RSS from a
gateway's first scrape on, to write a few kilobytes of text (issue 15). The central ingest
still uses it (gateway.ingest.metrics), and the tests read this module's output with its
parser and compare it with its `generate_latest` (tests/ops/test_exposition.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar, NamedTuple, Protocol

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


class Family:
    """One metric family: its name (a counter's without `_total`), help text, type and
    samples. Names are checked here: the gateway's are constants, so a bad one is a bug."""

    __slots__ = ("_labelnames", "documentation", "name", "samples", "type")

    def __init__(self, name: str, documentation: str, typ: str,
                 labels: Sequence[str] | None) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels or ():
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} of {name}")
        self.name = name
        self.documentation = documentation
        self.type = typ
        self.samples: list[Sample] = []
        self._labelnames = tuple(labels or ())

    def _sample(self, suffix: str, labels: Sequence[str], value: float,
                extra: Iterable[tuple[str, str]] = ()) -> None:
        names = dict(zip(self._labelnames, labels, strict=False))
        names.update(extra)
        self.samples.append(Sample(self.name + suffix, names, value))


class _OneValue(Family):
    """A family whose children are one value each, in the sample `<name><_suffix>`."""

    _type: ClassVar[str]
    _suffix: ClassVar[str]

    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__(name.removesuffix(self._suffix), documentation, self._type,
                         _labels_or_value(labels, value))
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self._sample(self._suffix, labels, value)


class CounterMetricFamily(_OneValue):
    """Named without `_total` (given with it, it is taken off); its samples have it."""

    _type, _suffix = "counter", "_total"


class GaugeMetricFamily(_OneValue):
    _type, _suffix = "gauge", ""


class SummaryMetricFamily(Family):
    """A summary without quantiles: `_count` and `_sum`."""

    def __init__(self, name: str, documentation: str, count_value: int | None = None,
                 sum_value: float | None = None, labels: Sequence[str] | None = None) -> None:
        if (sum_value is None) != (count_value is None):
            raise ValueError("count_value and sum_value must be given together")
        super().__init__(name, documentation, "summary", _labels_or_value(labels, count_value))
        if count_value is not None and sum_value is not None:
            self.add_metric([], count_value, sum_value)

    def add_metric(self, labels: Sequence[str], count_value: float, sum_value: float) -> None:
        self._sample("_count", labels, count_value)
        self._sample("_sum", labels, sum_value)


class HistogramMetricFamily(Family):
    """Buckets are (`le` as text, cumulative count), in order, the last `+Inf` (its count is
    the histogram's `_count`); no `_count` and `_sum` when the first bound is negative or
    `sum_value` is None, as prometheus_client."""

    def __init__(self, name: str, documentation: str,
                 buckets: Sequence[tuple[str, float]] | None = None,
                 sum_value: float | None = None, labels: Sequence[str] | None = None) -> None:
        if sum_value is not None and buckets is None:
            raise ValueError("a sum needs buckets")
        super().__init__(name, documentation, "histogram", _labels_or_value(labels, buckets))
        if buckets is not None:
            self.add_metric([], buckets, sum_value)

    def add_metric(self, labels: Sequence[str], buckets: Sequence[tuple[str, float]],
                   sum_value: float | None) -> None:
        for bound, count in buckets:
            self._sample("_bucket", labels, count, [("le", bound)])
        if float(buckets[0][0]) >= 0 and sum_value is not None:
            self._sample("_count", labels, buckets[-1][1])
            self._sample("_sum", labels, sum_value)


class InfoMetricFamily(Family):
    """Written as the gauge `<name>_info` of value 1, its labels the information."""

    def __init__(self, name: str, documentation: str, value: Mapping[str, str] | None = None,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__(name, documentation, "info", _labels_or_value(labels, value))
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: Mapping[str, str]) -> None:
        self._sample("_info", labels, 1, value.items())


def _labels_or_value(labels: Sequence[str] | None, value: object) -> Sequence[str] | None:
    if labels is not None and value is not None:
        raise ValueError("give a family labels or a value, not both")
    return labels


class Collector(Protocol):
    def collect(self) -> Iterable[Family]: ...


def render(collectors: Iterable[Collector]) -> bytes:
    """The text exposition (version 0.0.4, UTF-8) of every family of `collectors`, in order."""
    out: list[str] = []
    for collector in collectors:
        for family in collector.collect():
            name, typ = family.name, family.type
            if typ == "counter":
                name += "_total"
            elif typ == "info":
                name, typ = name + "_info", "gauge"
            out.append(f"# HELP {name} {escape_help(family.documentation)}\n"
                       f"# TYPE {name} {typ}\n")
            out.extend(_line(sample) for sample in family.samples)
    return "".join(out).encode()


def _line(sample: Sample) -> str:
    if not sample.labels:
        return f"{sample.name} {format_value(sample.value)}\n"
    labels = ",".join(f'{key}="{escape_label_value(value)}"'
                      for key, value in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}} {format_value(sample.value)}\n"


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def escape_label_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def format_value(value: float) -> str:
    """A sample's value as prometheus_client writes it (its `floatToGoString`): `+Inf`,
    `-Inf`, `NaN`, an integer as `5.0`, Python's shortest repr otherwise — with Go's exponent
    (`1.5e+06`) for positive values from a million up, where Python's repr would write
    `1500000.0`."""
    value = float(value)
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text
