"""The point catalog shares one `PointTags` among a device's points with the same quantity and
unit (issue 15: a model instance per point was 0.4 KiB each for as long as a gateway runs):
it must be, point by point, the catalog of one `PointMeta` per point — the same values, the
same content hash, the same bytes on the wire — for every shipped site."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.contract.wire import CatalogReport, PointCatalog, PointMeta, catalog_hash, encode
from gateway.field.bus_loop import ONLINE_POINT
from gateway.field.catalog import catalog_points
from gateway.field.points import bind_points

SITES = sorted((Path(__file__).resolve().parents[2] / "firmware_configs").glob("*.yaml"))


def one_per_point(loaded: LoadedConfig) -> dict[str, PointMeta]:
    """The reference: a new `PointMeta` for every point, flag and online point."""
    points: dict[str, PointMeta] = {}
    for device in loaded.config.devices:
        if not device.enabled:
            continue
        for point in bind_points(device, loaded.profile_of(device)):
            points[point.id] = PointMeta(device=device.id, room=device.room,
                                         quantity=point.quantity, unit=point.unit)
            for flag in point.flags:
                points[flag.id] = PointMeta(device=device.id, room=device.room,
                                            quantity=flag.quantity)
        points[f"{device.id}.{ONLINE_POINT}"] = PointMeta(device=device.id, room=device.room,
                                                          quantity="device_online")
    return points


@pytest.mark.parametrize("site", SITES, ids=lambda p: p.stem)
def test_the_catalog_is_one_meta_per_point_shared(site: Path) -> None:
    loaded = load_gateway_config(site)
    shared, reference = catalog_points(loaded), one_per_point(loaded)
    assert list(shared) == list(reference)
    for point, meta in reference.items():
        tags = shared[point]
        assert (tags.device, tags.room, tags.quantity, tags.unit) == (
            meta.device, meta.room, meta.quantity, meta.unit), point
    assert catalog_hash(shared) == catalog_hash(reference)
    ident = loaded.config.gateway
    assert CatalogReport.build(site=ident.site, gateway=ident.id, produced=10**18,
                               points=shared).encode() == encode(
        PointCatalog.build(site=ident.site, gateway=ident.id, produced=10**18,
                           points=reference))
    assert any(p.flags for d in loaded.config.devices
               for p in bind_points(d, loaded.profile_of(d))), "a site with flags"
    assert len({id(m) for m in shared.values()}) < len(shared), "nothing was shared"
