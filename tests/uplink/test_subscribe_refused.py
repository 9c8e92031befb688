"""A broker that refuses the gateway's `cmd` subscription (its SUBACK: MQTT 5 *Not
authorized*, MQTT 3.1.1 0x80): the uplink stays connected and keeps publishing telemetry, says
"connected, not subscribed" naming the refused filter (status, the uplink health check, the
log), asks again with back-off on the same connection (it does not reconnect for it), and is
clean once the broker grants it — changed live (`mosquitto_ctrl`) or in its file across a
restart. Real Mosquitto 2.0 with its dynamic-security plugin (tests/fixtures/dynsec.py: its
`acl_file` never refuses a SUBSCRIBE). The plugin disconnects the clients of a role it
changes, so a live grant is taken at the reconnect that follows; a broker that changes its
rules without that is granted at the next attempt on the same connection
(tests/uplink/test_subscriptions.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.contract.wire import RequestState
from gateway.ops.uplink_health import uplink_trouble
from gateway.uplink.publisher import Uplink
from gateway.uplink.status import link_text
from tests.fixtures.dynsec import DynsecBroker, running_dynsec
from tests.uplink.conftest import Subscriber
from tests.uplink.test_commands import Commander, results_for, uplink
from tests.uplink.test_publisher import PREFIX, of, samples, settings, until

CMD = PREFIX + "cmd"
REASON = {"5": "Not authorized", "3.1.1": "Unspecified error"}
"""What paho names the refusal: 0x87 in MQTT 5, 0x80 (no more said) in 3.1.1."""
ALLOWED = [("publishClientSend", "roomwarden/#"),  # the gateway publishes, the test commands
           ("subscribeLiteral", PREFIX + "config/set"),  # the gateway's other inbound topic
           ("subscribePattern", "roomwarden/+/+/telemetry"),  # the test's subscribers
           ("subscribePattern", "roomwarden/+/+/cmd/result")]
"""The anonymous role: everything these tests need but the gateway's `cmd` subscription."""


@pytest.fixture
def refusing(tmp_path: Path) -> Iterator[DynsecBroker]:
    yield from running_dynsec(tmp_path / "broker", ALLOWED)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("event=uplink_subscribe_refused")]


def assert_refused(up: Uplink, reason: str) -> None:
    """Connected, not subscribed, `cmd` named with the broker's reason everywhere."""
    status = up.status()
    assert status.connected and not status.subscribed
    assert status.refused == {CMD: reason}
    assert link_text(status) == (f"connected, not subscribed: {CMD} refused ({reason}) — "
                                 "no operator commands reach the gateway")
    degraded, detail = uplink_trouble(up, allow_unsigned=False)
    assert degraded, detail
    assert detail.startswith(f"connected, not subscribed: {CMD} refused ({reason}) — no "
                             "operator commands reach the gateway; telemetry and alarms are "
                             "still published; subscribing again every 0.5 s at most")


def assert_clean(up: Uplink) -> None:
    status = up.status()
    assert status.connected and status.subscribed and status.refused == {}
    assert link_text(status) == "connected"
    degraded, detail = uplink_trouble(up, allow_unsigned=False)
    assert not degraded and detail.startswith("connected; outbox "), detail


def request_state(cid: str) -> RequestState:
    return RequestState(id=cid, ts=time.time_ns(), actor="ingest", action="request_state")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_refused_retried_then_granted_live(
        protocol: str, refusing: DynsecBroker, subscribers: list[Subscriber], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roomwarden.uplink")
    sub = Subscriber(refusing.port, [PREFIX + "telemetry", PREFIX + "cmd/result"])
    subscribers.append(sub)
    commander = Commander(refusing.port)
    try:
        async with uplink(settings(refusing.port, protocol=protocol),
                          tmp_path / "state") as up:
            await until(lambda: up.status().refused != {}, what="the refusal")
            assert_refused(up, REASON[protocol])
            assert refusals(caplog)[0].startswith(
                f"event=uplink_subscribe_refused filters={CMD} reasons='{REASON[protocol]}' "
                "attempt=1 retry_in_s=")

            up.on_samples(samples(1))  # data keeps flowing while commands cannot arrive
            await until(lambda: len(sub.snapshot(of("telemetry"))) == 1, what="telemetry")
            commander.send(request_state("lost-1"))  # refused: it never reaches the gateway

            await until(lambda: len(refusals(caplog)) >= 3, what="asked again, refused again")
            assert_refused(up, REASON[protocol])
            assert [m.split(" attempt=")[1].split(" ")[0] for m in refusals(caplog)][:3] == \
                ["1", "2", "3"]
            assert up.status().connects == 1  # asked again on the same connection

            await asyncio.to_thread(refusing.allow, "subscribeLiteral", CMD)
            await until(lambda: up.status().subscribed and up.status().connects == 2,
                        what="granted at the reconnect after the plugin's disconnect")
            assert_clean(up)

            # (the test's own clients are the role's too: back once they have resubscribed)
            await until(lambda: sub.connects == 2 and sub.subscribed.is_set()
                        and commander.client.is_connected(), what="the test's clients back")
            commander.send(request_state("heard-1"))  # now commands arrive
            await until(lambda: len(results_for(sub, "heard-1")) == 1, what="the answer")
            assert results_for(sub, "lost-1") == []
            assert up.status().commands_received == 1
    finally:
        commander.close()


async def test_the_refusal_stays_across_reconnects_until_the_restarted_broker_grants(
        refusing: DynsecBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roomwarden.uplink")
    async with uplink(settings(refusing.port, protocol="5"), tmp_path / "state") as up:
        await until(lambda: up.status().refused != {}, what="the refusal")
        assert up.status().connects == 1

        refusing.restart()  # the same rules: refused again on the new connection
        await until(lambda: up.status().connects == 2 and up.status().refused != {},
                    what="refused again after the reconnect")
        assert_refused(up, "Not authorized")

        refusing.stop()
        await until(lambda: not up.status().connected, what="the outage noticed")
        assert up.status().refused == {}  # nothing is refused while nothing is connected
        assert uplink_trouble(up, allow_unsigned=False)[1].startswith("disconnected")
        refusing.allow_in_file("subscribeLiteral", CMD)
        refusing.start()
        # (the SUBACK can be handled before the publisher counts the connection it came on)
        await until(lambda: up.status().subscribed and up.status().connects == 3,
                    what="subscribed after the reconnect")
        assert_clean(up)
