"""The gateway's own messages without pydantic (gateway.contract.outbound, issue 15): for any
input — every field present or absent, unicode, large integers, floats of every kind, and
values the contract refuses — `StateReport` and `CatalogReport` give exactly the bytes of
`encode(<the model>)`, which `decode` (the ingest's path) reads back as that model, and refuse
(ContractError) exactly what the models refuse. The models stay the wire's single source of
truth: the dataclasses have their fields, in their order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from gateway.contract import wire as c
from tests.uplink.strategies import ids, names, points

odd_text = st.text(st.characters(exclude_categories=()), max_size=3)
"""Lone surrogates among them (the contract refuses those)."""


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


# what the contract takes: every shape of it
good_ids = ids | st.just("a" * 64)
good_ns = st.integers(0, 2**63 - 1) | st.sampled_from([0, 2**63 - 1])
good_counts = st.integers(0, 2**70) | st.sampled_from([0, 10**30])  # no upper bound
good_positives = st.integers(1, 2**63 - 1) | st.sampled_from([1, 2**63 - 1])
good_ages = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False) \
    | st.integers(0, 10**6) | st.sampled_from([-0.0, 1e16, 1e-7, 5e-324,
                                               1.7976931348623157e308])
good_texts = st.text(max_size=64) | st.sampled_from(["é\u2028\"\\\x00\x7f😀", "9" * 64])
good_hashes = st.from_regex(r"[0-9a-f]{16}", fullmatch=True)
good_sha256s = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
good_names = names | st.just("a" * 64)
good_units = st.text(max_size=16) | st.sampled_from(["°C", "%LEL", "u" * 16])
good_points = points | st.just("p" * 160)

# what it refuses, field by field
bad_ids = st.sampled_from(["a" * 65, "", "-x", "a b", "é", "a\n", "\ud800", None, 7])
bad_ns = st.sampled_from([-1, 2**63, 2**64, True, 1.0, "1", None])
bad_counts = st.sampled_from([-1, -(2**70), True, 1.5, "3"])
bad_positives = st.sampled_from([0, -5, 2**63, True, 1.0])
bad_ages = st.sampled_from([-1e-9, -1, float("inf"), float("nan"), True, "1.0", 10**400])
bad_texts = st.sampled_from(["x" * 65, "\ud800", "a\udfff", b"bytes", 5])
bad_hashes = st.sampled_from(["0" * 15, "g" * 16, "0" * 17, "A" * 16, 16])
bad_sha256s = st.sampled_from(["A" * 64, "0" * 63, "0" * 65, ""])
bad_names = st.sampled_from(["Temp", "1x", "a" * 65, "", "\ud800"])
bad_units = st.sampled_from(["u" * 17, "\ud800", 5])
bad_points = st.sampled_from(["p" * 161, "", "a/b", "-p", "\ud800"])

outbox_figures = st.builds(c.OutboxFigures, depth=good_counts, bytes=good_counts,
                           budget=good_counts, oldest_age_s=optional(good_ages))
delivery_terms = st.builds(c.DeliveryTerms, mode=st.sampled_from(["ingest", "puback"]),
                           stream=optional(good_positives), floor=optional(good_positives))
state_reports = st.builds(
    c.StateReport, site=good_ids, gateway=good_ids,
    status=st.sampled_from(["online", "offline"]), ts=good_ns, software=optional(good_texts),
    config_version=optional(good_texts), config_hash=optional(good_sha256s),
    catalog=optional(good_hashes), boot=optional(good_ns), outbox=optional(outbox_figures),
    dropped=st.dictionaries(st.sampled_from(c.MessageKind), good_counts, max_size=3),
    devices_online=optional(good_counts), devices_total=optional(good_counts),
    delivery=optional(delivery_terms))
point_tags = st.builds(c.PointTags, device=good_ids, room=optional(good_ids),
                       quantity=optional(good_names), unit=optional(good_units))
catalog_points = st.lists(point_tags, min_size=1, max_size=3).flatmap(  # shared, as a device's
    lambda shared: st.dictionaries(good_points, st.sampled_from(shared), max_size=8))


def one_bad(obj: Any, bad: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """`obj` with one of its fields given a value the contract refuses."""
    return st.sampled_from(sorted(bad)).flatmap(
        lambda name: bad[name].map(lambda value: dataclasses.replace(obj, **{name: value})))


BAD_OUTBOX = {"depth": bad_counts, "bytes": bad_counts, "budget": bad_counts,
              "oldest_age_s": bad_ages}
BAD_DELIVERY = {"mode": st.sampled_from(["acks", "", "Ingest", None]),
                "stream": bad_positives, "floor": bad_positives}
BAD_STATE: dict[str, st.SearchStrategy[Any]] = {
    "site": bad_ids, "gateway": bad_ids, "status": st.sampled_from(["away", "Online", None]),
    "ts": bad_ns, "software": bad_texts, "config_version": bad_texts,
    "config_hash": bad_sha256s, "catalog": bad_hashes,
    "boot": bad_ns.filter(lambda v: v is not None),
    "outbox": outbox_figures.flatmap(lambda o: one_bad(o, BAD_OUTBOX)),
    "dropped": st.sampled_from([{"alarm": 1}, {c.MessageKind.ALARM: -1},
                                {c.MessageKind.STATE: True}, {c.MessageKind.ALARM: 1.0}]),
    "devices_online": bad_counts, "devices_total": bad_counts,
    "delivery": delivery_terms.flatmap(lambda d: one_bad(d, BAD_DELIVERY))}
BAD_TAGS = {"device": bad_ids, "room": bad_ids.filter(lambda v: v is not None),
            "quantity": bad_names, "unit": bad_units}
broken_states = state_reports.flatmap(lambda r: one_bad(r, BAD_STATE))

# any mix of the two
any_ids, any_ns = good_ids | bad_ids | odd_text, good_ns | bad_ns | st.integers(-3, 2**66)
mixed_states = st.builds(
    c.StateReport, site=any_ids, gateway=any_ids,
    status=st.sampled_from(["online", "offline", "away"]), ts=any_ns,
    software=optional(good_texts | bad_texts | odd_text),
    config_version=optional(good_texts | bad_texts), catalog=optional(good_hashes | bad_hashes),
    outbox=optional(st.builds(c.OutboxFigures, good_counts | bad_counts, good_counts,
                              good_counts, optional(good_ages | bad_ages | st.floats()))),
    devices_online=optional(good_counts | bad_counts),
    delivery=optional(st.builds(c.DeliveryTerms, st.sampled_from(["ingest", "puback", "x"]),
                                optional(good_positives | bad_positives))))


def outcome(make: Callable[[], bytes]) -> bytes | None:
    """The bytes, or None if the contract refused (the only ways either side may refuse)."""
    try:
        return make()
    except (ValidationError, c.ContractError):
        return None


def fields_of(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def state_model(report: c.StateReport) -> c.GatewayState:
    given_ = fields_of(report)
    if report.outbox is not None:
        given_["outbox"] = c.OutboxStatus(**fields_of(report.outbox))
    if report.delivery is not None:
        given_["delivery"] = c.DeliveryInfo(**fields_of(report.delivery))
    return c.GatewayState(**given_)


def catalog_model(site: str, gateway: str, produced: int,
                  pts: dict[str, c.PointTags]) -> c.PointCatalog:
    metas = {p: c.PointMeta(**fields_of(t)) for p, t in pts.items()}
    return c.PointCatalog.build(site=site, gateway=gateway, produced=produced, points=metas)


def assert_read_back(channel: c.Channel, site: str, gateway: str, data: bytes,
                     model: BaseModel) -> None:
    decoded = c.decode(str(c.Topic(site, gateway, channel)), data)
    assert decoded == model
    assert c.encode(decoded) == data


@settings(max_examples=500)
@given(report=state_reports)
def test_a_state_report_is_the_gateway_states_bytes(report: c.StateReport) -> None:
    model = state_model(report)
    got = report.encode()
    assert got == c.encode(model)
    assert_read_back(c.Channel.STATE, report.site, report.gateway, got, model)


@settings(max_examples=300)
@given(report=broken_states)
def test_a_state_report_refuses_every_field_the_gateway_state_refuses(
        report: c.StateReport) -> None:
    with pytest.raises(ValidationError):
        state_model(report)
    with pytest.raises(c.ContractError):
        report.encode()


@settings(max_examples=300)
@given(report=mixed_states)
def test_a_state_report_and_the_gateway_state_agree_on_any_mix(report: c.StateReport) -> None:
    assert outcome(report.encode) == outcome(lambda: c.encode(state_model(report)))


@settings(max_examples=300)
@given(site=good_ids, gateway=good_ids, produced=good_ns, pts=catalog_points)
def test_a_catalog_report_is_the_point_catalogs_bytes(
        site: str, gateway: str, produced: int, pts: dict[str, c.PointTags]) -> None:
    model = catalog_model(site, gateway, produced, pts)
    report = c.CatalogReport.build(site=site, gateway=gateway, produced=produced, points=pts)
    assert report.catalog == model.catalog == c.catalog_hash(pts)
    got = report.encode()
    assert got == c.encode(model)
    assert_read_back(c.Channel.META, site, gateway, got, model)
    # a birth's copy, produced later: still the model's bytes
    later = dataclasses.replace(report, produced=produced // 2)
    assert later.encode() == c.encode(catalog_model(site, gateway, produced // 2, pts))


@settings(max_examples=300)
@given(site=good_ids, gateway=good_ids, produced=good_ns, pts=catalog_points,
       where=st.sampled_from(["site", "gateway", "produced", "point", *BAD_TAGS]),
       data=st.data())
def test_a_catalog_report_refuses_every_field_the_point_catalog_refuses(
        site: Any, gateway: Any, produced: Any, pts: dict[str, Any], where: str,
        data: st.DataObject) -> None:
    pts = dict(pts) or {"d.p": c.PointTags("d")}
    if where in ("site", "gateway"):
        site, gateway = (data.draw(bad_ids), gateway) if where == "site" else \
            (site, data.draw(bad_ids))
    elif where == "produced":
        produced = data.draw(bad_ns)
    elif where == "point":
        pts[data.draw(bad_points)] = next(iter(pts.values()))
    else:
        point = data.draw(st.sampled_from(sorted(pts)))
        pts[point] = dataclasses.replace(pts[point], **{where: data.draw(BAD_TAGS[where])})
    with pytest.raises(ValueError):  # PointMeta's ValidationError, PointCatalog.build's
        catalog_model(site, gateway, produced, pts)  # ContractError or (its hash) a surrogate's
    with pytest.raises(c.ContractError):
        c.CatalogReport.build(site=site, gateway=gateway, produced=produced, points=pts)


def test_a_catalog_whose_hash_is_not_its_points_is_refused() -> None:
    """`PointCatalog`'s validator, kept: the hash is recomputed when the catalog is encoded."""
    pts = {"th-1.temperature": c.PointTags("th-1", "r1", "temperature", "°C")}
    report = c.CatalogReport.build(site="s1", gateway="g1", produced=1, points=pts)
    assert report.encode()
    with pytest.raises(c.ContractError, match="hash"):
        dataclasses.replace(report, catalog="0" * 16).encode()
    changed = dict(pts, **{"th-1.humidity": c.PointTags("th-1", "r1", "relative_humidity")})
    with pytest.raises(c.ContractError, match="hash"):
        dataclasses.replace(report, points=changed).encode()


@pytest.mark.parametrize(("count", "point"), [(c.MAX_CATALOG_POINTS + 1, "p{}"),
                                               (6000, "p{}." + "x" * 150)])
def test_catalogs_beyond_the_contracts_limits_are_refused_by_both(count: int, point: str
                                                                  ) -> None:
    """More points than MAX_CATALOG_POINTS; a payload beyond MAX_PAYLOAD_BYTES (6,000 long
    point ids with long tags: 2.3 MB)."""
    tags = c.PointTags("d" * 64, "r" * 64, "q" * 64, "u" * 16)
    pts = {point.format(i): tags for i in range(count)}
    with pytest.raises(c.ContractError):
        c.encode(catalog_model("s1", "g1", 1, pts))
    with pytest.raises(c.ContractError):
        c.CatalogReport.build(site="s1", gateway="g1", produced=1, points=pts).encode()


@pytest.mark.parametrize(("ours", "model"), [
    (c.StateReport, c.GatewayState), (c.OutboxFigures, c.OutboxStatus),
    (c.DeliveryTerms, c.DeliveryInfo), (c.CatalogReport, c.PointCatalog),
    (c.PointTags, c.PointMeta)])
def test_the_dataclasses_have_the_models_fields_in_their_order(
        ours: type[Any], model: type[BaseModel]) -> None:
    wire = [name for name in model.model_fields if name != "v"]
    assert [f.name for f in dataclasses.fields(ours)] == wire
    for f in dataclasses.fields(ours):  # absent in the model: absent here (None), and back
        default = model.model_fields[f.name].default
        if f.default is not dataclasses.MISSING:
            assert f.default == default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert f.default_factory() == default, f.name
