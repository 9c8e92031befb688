"""The sd_notify client against a socket the test owns."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest

from gateway.service.notify import MAX_STATUS, Notifier
from tests.service.conftest import NotifySocket


def test_messages_reach_a_path_socket_from_this_process(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.address})
    assert notifier.enabled
    assert notifier.ready("polling 3 buses")
    assert notifier.status("line one\nline two")
    assert notifier.watchdog()
    assert notifier.stopping("stopping: outputs to their stop state")
    assert notifier.extend_timeout(12.5)
    assert notify_socket.wait(lambda m: len(m) == 5)
    raw = [m.raw for m in notify_socket.messages]
    assert raw[0] == b"READY=1\nSTATUS=polling 3 buses\n"
    assert raw[1] == b"STATUS=line one line two\n"  # one line for `systemctl status`
    assert raw[2] == b"WATCHDOG=1\n"
    assert raw[3] == b"STOPPING=1\nSTATUS=stopping: outputs to their stop state\n"
    assert raw[4] == b"EXTEND_TIMEOUT_USEC=12500000\n"
    # the kernel's credentials name this process: what NotifyAccess=main accepts
    assert {m.pid for m in notify_socket.messages} == {os.getpid()}
    notifier.close()


def test_reloading_carries_the_monotonic_time(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading("reloading config")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notify_socket.wait(lambda m: len(m) == 1)
    fields = notify_socket.messages[0].fields
    assert fields["RELOADING"] == "1" and fields["STATUS"] == "reloading config"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_an_abstract_namespace_socket(abstract_notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": abstract_notify_socket.address})
    assert abstract_notify_socket.address.startswith("@")
    assert notifier.ready() and notifier.watchdog()
    assert abstract_notify_socket.wait(lambda m: len(m) == 2)
    assert [m.fields for m in abstract_notify_socket.messages] == [{"READY": "1"},
                                                                  {"WATCHDOG": "1"}]


def test_without_notify_socket_everything_is_a_quiet_no_op(
        caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    with caplog.at_level(logging.DEBUG):
        results = [notifier.ready("x"), notifier.status("y"), notifier.watchdog(),
                   notifier.stopping(), notifier.reloading()]
    assert results == [False] * 5
    assert not caplog.records


def test_a_missing_socket_is_logged_once_and_never_raises(
        tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path_factory.mktemp("n")
    path = directory / "gone.sock"
    notifier = Notifier(str(path))
    with caplog.at_level(logging.INFO, logger="roomwarden.service"):
        assert [notifier.watchdog() for _ in range(5)] == [False] * 5
        failed = [r for r in caplog.records if "event=notify_failed" in r.message]
        assert len(failed) == 1 and notifier.failures == 5
        # the manager comes back (e.g. after daemon-reexec): messages flow again
        receiver = NotifySocket(str(path), str(path))
        try:
            assert notifier.watchdog()
            assert receiver.wait(lambda m: len(m) == 1)
        finally:
            receiver.close()
    assert any("event=notify_restored" in r.message for r in caplog.records)


def test_a_full_socket_queue_drops_messages_instead_of_blocking(
        notify_socket: NotifySocket) -> None:
    """Nobody reads the socket: a blocking send would hang the caller (the event loop)."""
    notifier = Notifier(notify_socket.address)
    results: list[bool] = []

    def spam() -> None:
        results.extend(notifier.watchdog() for _ in range(5000))

    thread = threading.Thread(target=spam, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "sending blocked on a full queue"
    assert results.count(True) > 0 and results.count(False) > 0


def test_status_is_one_bounded_line(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.address)
    assert notifier.status("x" * 5000 + "\n\r")
    assert notify_socket.wait(lambda m: len(m) == 1)
    assert len(notify_socket.messages[0].fields["STATUS"]) == MAX_STATUS


@pytest.mark.parametrize(("env", "expected"), [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_from_the_environment(env: dict[str, str],
                                                expected: float | None) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", **env})
    assert notifier.watchdog_interval() == expected


def test_an_unsupported_address_is_disabled(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="roomwarden.service"):
        notifier = Notifier("vsock:2:1234")
    assert not notifier.enabled and not notifier.watchdog()
    assert any("notify_unsupported" in r.message for r in caplog.records)


def test_the_socket_is_not_inherited_by_children(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.address)
    assert notifier.watchdog()
    sock = notifier._socket
    assert isinstance(sock, socket.socket) and not sock.get_inheritable()
