"""Several ingest instances on one MQTT 5 shared subscription, against a real mosquitto: every
instance gets every point catalog (meta is subscribed plainly), and a batch that reaches an
instance before its catalog waits for it (the ingest asks the gateway with `request_state`)
instead of being lost."""

from __future__ import annotations

from pathlib import Path

from gateway.contract import wire as c
from gateway.ingest.service import IngestService, subscriptions
from tests.fixtures.services import Broker, Subscriber, Victoria, wait_for
from tests.ingest.test_service import CATALOG, GW, SITE, Gateway, batch, make_settings, ms, values


def instance(tmp_path: Path, broker: Broker, vm: Victoria, name: str) -> IngestService:
    d = tmp_path / name
    return IngestService(make_settings(d, broker, vm, client_id=name, catalog_wait="30s"))


def test_meta_is_subscribed_plainly_and_the_rest_shared(tmp_path: Path, broker: Broker,
                                                        victoria: Victoria) -> None:
    settings = make_settings(tmp_path, broker, victoria)
    assert subscriptions(settings) == [
        "$share/ingest/roomwarden/+/+/telemetry", "roomwarden/+/+/meta",
        "$share/ingest/roomwarden/+/+/alarms", "$share/ingest/roomwarden/+/+/state",
        "roomwarden/+/+/incidents"]  # incidents: issue 12
    plain = make_settings(tmp_path, broker, victoria, protocol="3.1.1")
    assert all(not f.startswith("$share") for f in subscriptions(plain))


def test_two_instances_share_the_stream_and_both_know_the_catalog(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    a = instance(tmp_path, broker, victoria, "ingest-a")
    b = instance(tmp_path, broker, victoria, "ingest-b")
    gateway = Gateway(broker)
    for s in (a, b):
        s.start()
    try:
        wait_for(lambda: bool(a.status()["subscribed"] and b.status()["subscribed"]),
                 what="both subscribed")
        gateway.send(CATALOG)
        for i in range(20):
            gateway.send(batch(i + 1, i, 20.0 + i))
        wait_for(lambda: int(a.status()["written_points"])
                 + int(b.status()["written_points"]) == 60, what="20 batches written")
        assert a.status()["catalogs"] == b.status()["catalogs"] == 1
        assert a.status()["written_points"] and b.status()["written_points"], \
            "the shared subscription split the batches"
        assert a.status()["dead_lettered"] == b.status()["dead_lettered"] == 0
        assert values(victoria, "temperature_value") == {ms(i): 20.0 + i for i in range(20)}
    finally:
        gateway.close()
        for s in (a, b):
            s.stop()


def test_a_batch_whose_catalog_this_instance_missed_waits_for_it(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    """Instance b joins after the catalog went out: its share of the batches waits,
    unacknowledged, while b asks the gateway for its state; the gateway (here: the test)
    answers with the catalog and every batch is written, none dead-lettered."""
    a = instance(tmp_path, broker, victoria, "ingest-a")
    gateway = Gateway(broker)
    commands = Subscriber(broker.port, f"roomwarden/{SITE}/{GW}/cmd")
    a.start()
    b = instance(tmp_path, broker, victoria, "ingest-b")
    try:
        wait_for(lambda: bool(a.status()["subscribed"]), what="a subscribed")
        gateway.send(CATALOG)
        wait_for(lambda: a.status()["catalogs"] == 1, what="a has the catalog")
        b.start()
        wait_for(lambda: bool(b.status()["subscribed"]), what="b subscribed")
        for i in range(20):
            gateway.send(batch(i + 1, i, 30.0 + i))
        wait_for(lambda: int(b.status()["parked"]) > 0, what="b holds batches")
        wait_for(lambda: len(commands.snapshot()) >= 1, what="request_state from b")
        request = c.decode(commands.snapshot()[0].topic, commands.snapshot()[0].payload)
        assert isinstance(request, c.RequestState)
        assert int(a.status()["written_points"]) < 60
        gateway.send(CATALOG)  # the gateway answers request_state with its catalog
        wait_for(lambda: int(a.status()["written_points"])
                 + int(b.status()["written_points"]) == 60, what="20 batches written")
        assert values(victoria, "temperature_value") == {ms(i): 30.0 + i for i in range(20)}
        assert a.status()["dead_lettered"] == b.status()["dead_lettered"] == 0
        assert b.status()["parked"] == 0 and int(b.status()["parked_total"]) > 0
    finally:
        commands.close()
        gateway.close()
        a.stop()
        b.stop()
