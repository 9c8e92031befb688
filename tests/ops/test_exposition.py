"""The gateway's own text exposition (gateway.ops.exposition, gateway.ops.process_metrics)
against prometheus_client, the library it replaced in the gateway (issue 15): a real gateway's
whole /metrics is byte for byte what prometheus_client wrote before; arbitrary families —
label values, help texts, values — are written as its `generate_latest` writes them and read
back by its parser; the process metrics are its `ProcessCollector`'s."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import prometheus_client.core
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import ProcessCollector as TheirProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.clock import ManualClock
from gateway.daemon import Gateway
from gateway.ops import collector, exposition
from gateway.ops.collector import GatewayCollector
from gateway.ops.health import HealthMonitor
from gateway.ops.metrics import METRIC_NAMES
from gateway.ops.process_metrics import ProcessCollector
from gateway.ops.source import MetricsSource
from gateway.uplink.publisher import Uplink
from gateway.uplink.status import UplinkStatus
from tests.ops.conftest import Broker, Live, start_live, until

KINDS = ("CounterMetricFamily", "GaugeMetricFamily", "HistogramMetricFamily",
         "InfoMetricFamily", "SummaryMetricFamily")


# --- a real gateway's /metrics, before and after ----------------------------------------------


class _StatusReadOnce:
    """The uplink, its `status()` read once."""

    def __init__(self, uplink: Uplink) -> None:
        self._uplink = uplink
        self._status = uplink.status()

    def status(self) -> UplinkStatus:
        return self._status

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uplink, name)


class AtOneInstant:
    """The running gateway as the collector reads it, held at one instant so that two collects
    agree: its clock stopped, its uplink's status read once (the uplink's threads move its
    counters between two reads). Everything else is the gateway's own attributes; nothing
    awaits between the two collects, so the event loop changes none of them."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.clock = ManualClock(gateway.clock.now_ns(), gateway.clock.monotonic())
        self.uplink = None if gateway.uplink is None else _StatusReadOnce(gateway.uplink)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)


def before_and_after(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes]:
    """The gateway's families written by prometheus_client as before issue 15 (the collector on
    its family classes, `generate_latest`), and as now, from one instant of the gateway."""
    source = cast(MetricsSource, AtOneInstant(gateway))
    health = HealthMonitor(source)
    now = exposition.render([GatewayCollector(source, health)])
    with monkeypatch.context() as patch:
        for kind in KINDS:
            patch.setattr(collector, kind, getattr(prometheus_client.core, kind))
        before = generate_latest(cast(Any, GatewayCollector(source, health)))
    return before, now


def parsed(text: bytes) -> list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]:
    return [(f.name, f.type, f.documentation, [(s.name, s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text.decode())]


async def test_a_gateways_metrics_are_what_prometheus_client_wrote(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    await until(lambda: live.gateway.evaluations > 0, "a round of the rules")
    before, now = before_and_after(live.gateway, monkeypatch)
    assert now == before
    uplink_only = {n for n in METRIC_NAMES if n.startswith(
        ("roomwarden_uplink_", "roomwarden_outbox_")) and n != "roomwarden_uplink_configured"}
    assert {name for name, *_ in parsed(now)} == {
        n.removesuffix("_total") for n in METRIC_NAMES if n not in uplink_only}


async def test_with_an_uplink_its_histogram_too(tmp_path: Path, broker: Broker,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    running = start_live(tmp_path, uplink_port=broker.port)
    live = await anext(running)
    try:
        uplink = live.gateway.uplink
        assert uplink is not None
        await until(lambda: uplink.status().latency_count > 0, "a PUBACK")
        before, now = before_and_after(live.gateway, monkeypatch)
    finally:
        await running.aclose()
    assert now == before
    families = {name: samples for name, _, _, samples in parsed(now)}
    assert set(families) == {n.removesuffix("_total") for n in METRIC_NAMES}
    latency = families["roomwarden_uplink_publish_latency_seconds"]
    assert latency[-3][1] == {"le": "+Inf"} and latency[-2][2] == latency[-3][2] > 0


# --- any family ---------------------------------------------------------------------------------

TEXT = st.text(max_size=30)
LINE_SPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c != "\n")
"""What `str.strip` takes off a line's end: white space but the newline (written escaped)."""
VALUES = st.floats() | st.integers(-(2**62), 2**62)
NAMES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
LABELS = st.lists(st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n != "le"), max_size=3, unique=True)


Spec = list[tuple[str, str, str, list[str], list[Any]]]
"""Families to build: (kind, name, help, label names, the `add_metric` arguments of each
child)."""


class Families:
    """The same calls on prometheus_client's family classes and on ours."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.families: list[Any] = []

    def collect(self) -> Iterator[Any]:
        return iter(self.families)

    @classmethod
    def of(cls, *given: Any) -> Families:
        built = cls(exposition)
        built.families.extend(given)
        return built

    def add(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        family = getattr(self.lib, kind)(*args, **kwargs)
        self.families.append(family)
        return family


@st.composite
def families(draw: st.DrawFn) -> Spec:
    out: Spec = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(KINDS))
        labels = draw(LABELS)
        values = st.lists(TEXT, min_size=len(labels), max_size=len(labels))
        children: list[Any] = []
        for _ in range(draw(st.integers(0, 3))):
            child = draw(values)
            if kind == "SummaryMetricFamily":
                children.append((child, draw(st.integers(0, 2**40)), draw(VALUES)))
            elif kind == "HistogramMetricFamily":
                bounds = sorted(draw(st.lists(st.floats(-1e9, 1e9), max_size=4, unique=True)))
                counts = sorted(draw(st.lists(st.integers(0, 2**40), min_size=len(bounds) + 1,
                                              max_size=len(bounds) + 1)))
                buckets = [*zip([repr(b) for b in bounds] + ["+Inf"], counts, strict=True)]
                children.append((child, buckets, draw(VALUES)))
            elif kind == "InfoMetricFamily":
                keys = [k for k in draw(LABELS) if k not in labels]
                children.append((child, {k: draw(TEXT) for k in keys}))
            else:
                children.append((child, draw(VALUES)))
        out.append((kind, draw(NAMES), draw(TEXT), labels, children))
    return out


def build(lib: Any, spec: Spec) -> Families:
    built = Families(lib)
    for index, (kind, name, help_text, labels, children) in enumerate(spec):
        family = built.add(kind, f"{name}_{index}", help_text, labels=labels)
        for child in children:
            family.add_metric(*child)
    return built


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@given(families())
def test_any_family_is_written_as_prometheus_client_writes_it(
        spec: Spec) -> None:
    ours = exposition.render([build(exposition, spec)])
    assert ours == generate_latest(cast(Any, build(prometheus_client.core, spec)))
    # and its parser reads back every help text, label value and value as it was given (a
    # help text less the white space it strips at the line's end and skips after the name)
    written = build(exposition, spec).families
    read = list(text_string_to_metric_families(ours.decode()))
    assert [f.documentation for f in read] == [
        f.documentation.rstrip(LINE_SPACE).lstrip(" \t\r\v\f") for f in written]
    samples = [s for f in written for s in f.samples]
    back = [s for f in read for s in f.samples]
    assert [(s.name, s.labels) for s in back] == [(s.name, s.labels) for s in samples]
    assert all(same(a.value, float(b.value)) for a, b in zip(back, samples, strict=True))


@given(VALUES)
def test_a_value_is_written_as_prometheus_client_writes_it(value: float) -> None:
    from prometheus_client import utils

    assert exposition.format_value(value) == cast(Any, utils).floatToGoString(value)
    assert same(float(exposition.format_value(value)), float(value))


def test_values_and_escapes_as_prometheus_expects() -> None:
    assert [exposition.format_value(v) for v in (
        math.inf, -math.inf, math.nan, 5, 0.25, 1234567.0, 1e7, -1234567.0, 1e-7)] == [
        "+Inf", "-Inf", "NaN", "5.0", "0.25", "1.234567e+06", "1e+07", "-1234567.0", "1e-07"]
    gauge = exposition.GaugeMetricFamily("g", 'a \\ b\n"c"', labels=["x"])
    gauge.add_metric(['a \\ b\n"c"'], 1)
    assert exposition.render([Families.of(gauge)]) == (
        b'# HELP g a \\\\ b\\n"c"\n# TYPE g gauge\ng{x="a \\\\ b\\n\\"c\\""} 1.0\n')


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(ValueError, match="metric name"):
        exposition.GaugeMetricFamily("roomwarden-x", "", value=1)
    with pytest.raises(ValueError, match="label name"):
        exposition.GaugeMetricFamily("g", "", labels=["__x"])
    with pytest.raises(ValueError, match="not both"):
        exposition.CounterMetricFamily("c", "", value=1, labels=["x"])


# --- process metrics --------------------------------------------------------------------------


def fake_proc(root: Path, variant: str) -> Path:
    """A copy of this process's /proc files (frozen: both collectors read the same), with
    `variant` taken out or changed."""
    me = root / "self"
    (me / "fd").mkdir(parents=True)
    stat = Path("/proc/stat").read_bytes()
    (root / "stat").write_bytes(stat if variant != "no btime" else b"cpu 1 2 3\n")
    pid_stat = Path("/proc/self/stat").read_bytes()
    if variant == "a command with brackets":
        head, _, tail = pid_stat.rpartition(b")")
        pid_stat = head.split(b"(", 1)[0] + b"(a) (b)" + tail
    if variant != "no process stat":
        (me / "stat").write_bytes(pid_stat)
    if variant != "no limits":
        (me / "limits").write_bytes(Path("/proc/self/limits").read_bytes())
    for fd in range(7):
        (me / "fd" / str(fd)).touch()
    return root


@pytest.mark.parametrize("variant", ["whole", "a command with brackets", "no process stat",
                                     "no limits", "no btime"])
def test_process_metrics_are_prometheus_clients(tmp_path: Path, variant: str) -> None:
    proc = fake_proc(tmp_path, variant)
    ours = exposition.render([ProcessCollector(proc)])
    theirs = generate_latest(cast(Any, TheirProcessCollector(proc=str(proc), registry=None)))
    assert ours == theirs
    assert (variant == "no btime") == (ours == b"")


def test_process_metrics_of_this_process() -> None:
    ours = {name: (typ, doc, samples[0][2]) for name, typ, doc, samples in parsed(
        exposition.render([ProcessCollector()]))}
    theirs = {name: (typ, doc, samples[0][2]) for name, typ, doc, samples in parsed(
        generate_latest(cast(Any, TheirProcessCollector(registry=None))))}
    assert list(ours) == list(theirs) == [
        "process_virtual_memory_bytes", "process_resident_memory_bytes",
        "process_start_time_seconds", "process_cpu_seconds", "process_open_fds",
        "process_max_fds"]
    for name in ("process_start_time_seconds", "process_max_fds"):
        assert ours[name] == theirs[name]
    assert [t[:2] for t in ours.values()] == [t[:2] for t in theirs.values()]
    assert ours["process_resident_memory_bytes"][2] > 1e6
    assert 0 < ours["process_open_fds"][2] <= ours["process_max_fds"][2]
