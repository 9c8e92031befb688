"""A real mosquitto on a free loopback port, and a paho subscriber that records what arrives."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto with kill/stop/start helpers for outage tests. `persistent`: sessions and
    queued QoS-1 messages survive a restart (a subscriber with clean_session=False then misses
    nothing published while it reconnects)."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 f"persistence {'true' if persistent else 'false'}",
                 f"log_dest file {directory / 'mosquitto.log'}", "log_type all",
                 # run as root, mosquitto would switch to user `mosquitto`, which cannot
                 # write the (private) test directory: stay who we are
                 f"user {getpass.getuser()}"]
        if persistent:
            lines.append(f"persistence_location {directory}/")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float


class Subscriber:
    """Subscribes to `<topic_filter>` with QoS 1 and records every message, thread-safely."""

    def __init__(self, port: int, topic_filter: str = "#", *, client_id: str | None = None,
                 clean_session: bool = True) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-sub-{os.getpid()}-{id(self)}",
                                  clean_session=clean_session)
        self.client.reconnect_delay_set(1, 2)

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            self.subscribed.clear()
            c.subscribe(topic_filter, qos=1)

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: int, _rc: Any, _p: Any) -> None:
            self.subscribed.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                              time.monotonic()))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(5), "subscriber did not subscribe"

    def snapshot(self, pred: Callable[[Received], bool] | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if pred is None or pred(m)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", persistent=True)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    """Register subscribers here to have them closed at teardown."""
    subs: list[Subscriber] = []
    yield subs
    for s in subs:
        s.close()
