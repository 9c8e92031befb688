"""A message received leaves no reference cycle behind (gateway.mqtt_client._NoFilters).

paho asks its `message_callback_add` matcher about every message it receives, and the matcher
built a self-referencing closure each time: a cycle per message that only the cyclic collector
frees. `roomwarden run` lets that collector run seldom (a young-generation threshold of 10,000,
gateway.supervisor), so the cycles of the ingest's acknowledgements piled up between
collections — growth a 10-minute soak at 2,000 points showed (tracemalloc: ~100 KiB in 8
minutes, in paho's matcher). Here a client made as the gateway, the ingest and the flasher make
theirs receives 300 messages from a real Mosquitto with the collector off; the collector then
finds (next to) nothing to free. A filter added with `message_callback_add` still works."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt_client import ClientOptions, build_client
from tests.fixtures.services import Broker

MESSAGES = 300


def receive(client: mqtt.Client, port: int, topic: str, count: int,
            filter_topic: str | None = None) -> list[str]:
    """What `count` messages published to `topic` (a `#` in it made `x`) reached: `message`
    (the client's on_message) or `filtered` (a callback added for `filter_topic`)."""
    got: list[str] = []
    done = threading.Event()
    subscribed = threading.Event()

    def taker(kind: str) -> Callable[[mqtt.Client, object, mqtt.MQTTMessage], None]:
        def take(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            got.append(kind)
            if len(got) >= count:
                done.set()
        return take

    client.on_message = taker("message")
    if filter_topic is not None:
        client.message_callback_add(filter_topic, taker("filtered"))
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "no SUBACK"
        sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sender")
        sender.connect("127.0.0.1", port)
        sender.loop_start()
        try:
            for i in range(count):
                sender.publish(topic.replace("#", "x"), f"{i}".encode(), qos=1)
            assert done.wait(30), f"received {len(got)} of {count}"
        finally:
            sender.loop_stop()
            sender.disconnect()
    finally:
        client.loop_stop()
        client.disconnect()
    return got


def test_received_messages_leave_no_cycles(broker: Broker) -> None:
    client = build_client(ClientOptions(client_id="cycles"))
    gc.collect()
    gc.disable()
    try:
        got = receive(client, broker.port, "rw/test/#", MESSAGES)
        time.sleep(0.2)  # paho's thread has ended its last callback
        freed = gc.collect()
    finally:
        gc.enable()
    assert len(got) == MESSAGES
    assert freed < MESSAGES // 10, f"{freed} objects in cycles after {MESSAGES} messages"


def test_a_topic_filter_callback_still_gets_its_messages(broker: Broker) -> None:
    client = build_client(ClientOptions(client_id="filtered"))
    got = receive(client, broker.port, "rw/test/#", 5, filter_topic="rw/test/x")
    assert got == ["filtered"] * 5  # paho: a matching filter's callback takes the message
