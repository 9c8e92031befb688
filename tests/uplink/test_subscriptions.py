"""What the uplink makes of its SUBACKs (gateway.uplink.subscriptions, pure): per-filter
refusals, asking again only for what was refused, with back-off that is bounded — a refusal
that stays costs a SUBSCRIBE per `reconnect_max`, not a loop — and granted once the broker
grants, on the same connection."""

from __future__ import annotations

from gateway.mqtt_client import Backoff
from gateway.uplink.subscriptions import Subscriptions

CMD, CONFIG, ACK = "rw/s/g/cmd", "rw/s/g/config/set", "rw/s/g/ack"
NOT_AUTHORIZED = (True, "Not authorized")
GRANTED = (False, "Granted QoS 1")


def subscriptions(minimum: float = 1.0, maximum: float = 60.0) -> Subscriptions:
    """No jitter, so the delays can be named."""
    return Subscriptions((CMD, CONFIG, ACK),
                         Backoff(minimum, maximum, uniform=lambda _a, _b: 1.0))


def test_a_partial_refusal_names_the_refused_filters_and_asks_again_for_them_only() -> None:
    subs = subscriptions()
    assert not subs.granted  # nothing answered yet: not subscribed (a clean session)
    subs.sent(1, (CMD, CONFIG, ACK))
    refusal = subs.suback(1, [NOT_AUTHORIZED, GRANTED, NOT_AUTHORIZED])
    assert refusal is not None
    assert (refusal.newly, refusal.attempt, refusal.retry_in) == (
        {CMD: "Not authorized", ACK: "Not authorized"}, 1, 1.0)
    assert subs.refused == {CMD: "Not authorized", ACK: "Not authorized"}
    assert not subs.granted
    assert subs.to_retry() == (CMD, ACK)
    subs.sent(2, (CMD, ACK))
    assert subs.to_retry() == ()  # asked for already: not again before its SUBACK

    refusal = subs.suback(2, [GRANTED, NOT_AUTHORIZED])  # the broker's rule half mended
    assert refusal is not None and refusal.newly == {ACK: "Not authorized"}
    assert subs.refused == {ACK: "Not authorized"} and subs.to_retry() == (ACK,)

    subs.sent(3, (ACK,))
    granted = subs.suback(3, [GRANTED])
    assert granted is not None and (granted.newly, granted.retry_in) == ({}, None)
    assert granted.attempt == 2  # refusals on this connection, for the log
    assert subs.granted and subs.refused == {} and subs.to_retry() == ()


def test_a_refusal_that_stays_is_asked_for_again_with_back_off_bounded_by_the_maximum() -> None:
    subs = subscriptions(1.0, 60.0)
    waited, attempts, mid = 0.0, 0, 0
    while waited < 3600.0:  # an hour of a broker that keeps refusing
        mid += 1
        subs.sent(mid, subs.to_retry() or (CMD, CONFIG, ACK))
        refusal = subs.suback(mid, [NOT_AUTHORIZED] * len(subs.pending[mid]))
        assert refusal is not None and refusal.retry_in is not None
        attempts += 1
        waited += refusal.retry_in
        if attempts <= 8:
            assert refusal.retry_in == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0][attempts - 1]
        else:
            assert refusal.retry_in == 60.0
    assert attempts == 65  # 7 doublings, then one a minute: never a loop


def test_what_a_suback_does_not_answer_counts_as_refused_and_a_stray_one_is_ignored() -> None:
    subs = subscriptions()
    subs.sent(7, (CMD, CONFIG, ACK))
    assert subs.suback(8, [GRANTED]) is None  # not a SUBSCRIBE of this connection
    refusal = subs.suback(7, [GRANTED])  # a broker that answered one code for three filters
    assert refusal is not None
    assert subs.refused == {CONFIG: "no reason code in the SUBACK",
                            ACK: "no reason code in the SUBACK"}
    assert not subs.granted


def test_a_connection_without_inbound_topics_has_nothing_to_wait_for() -> None:
    assert Subscriptions((), Backoff(1.0, 60.0)).granted
    subs = subscriptions()
    subs.sent(1, (CMD, CONFIG, ACK))
    assert not subs.granted  # sent, not answered
    subs.suback(1, [GRANTED] * 3)
    assert subs.granted
