"""The event loop's lag, measured at the watchdog feeder's wake-ups (gateway.service.looplag;
liveness audit L1: rounds that each blocked the loop 10 s kept the watchdog fed and /healthz
"ok"). Its logic on an injected clock; the feeder withholding the pings while its wake-ups come
late, on an injected clock; and a real `roomwarden run` service whose event loop is blocked for
seconds again and again: the watchdog is withheld and /healthz degraded, then both recover."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from gateway.service.looplag import LoopLag
from gateway.service.notify import Notifier
from gateway.service.watchdog import feed_watchdog
from tests.apply.conftest import running_service
from tests.service.conftest import NotifySocket
from tests.service.test_watchdog import until


def test_repeated_late_wakeups_block_one_alone_does_not() -> None:
    now = [100.0]
    lag = LoopLag(lambda: now[0])

    def wake(after: float, late: float) -> float:
        lag.sleeping(after)
        now[0] += after + late
        return lag.woke()

    assert lag.problem() is None and "not measured" in lag.summary()
    assert wake(15.0, 0.004) == pytest.approx(0.004)
    assert wake(15.0, 9.1) == pytest.approx(9.1)  # one late wake-up: shown, not a problem
    assert lag.problem() is None and "9.10" in lag.summary()
    wake(1.0, 0.0)
    assert lag.problem() is None
    wake(1.0, 7.2)  # the last three: 9.1, 0.0, 7.2 s late
    assert lag.problem() == ("event loop blocked: 2 of its last 3 wake-ups came 7.2-9.1 s late "
                             "(limit 2 s)")
    wake(1.0, 1.9)  # 0.0, 7.2, 1.9: under the limit is on time
    assert lag.problem() is None
    assert lag.wakeups == 5 and lag.worst == pytest.approx(9.1)
    assert lag.woke() == 0.0 and lag.wakeups == 5  # no sleep told: nothing measured


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LoopLag(late_count=4, window=3)
    with pytest.raises(ValueError):
        LoopLag(late_after=0)


@pytest.mark.slow
async def test_the_feeder_withholds_the_pings_while_its_wakeups_come_late(
        notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture) -> None:
    """The lag's clock runs ahead of the loop's while `blocked`: every wake-up of the feeder
    then comes seconds after the time it slept to, as in a loop blocked for seconds."""
    skew = [0.0]
    blocked = [False]
    lag = LoopLag(lambda: time.monotonic() + skew[0])

    async def block() -> None:
        while True:
            if blocked[0]:
                skew[0] += 3.0
            await asyncio.sleep(0.01)

    notify_socket.start_async()
    notifier = Notifier(notify_socket.address)
    caplog.set_level(logging.INFO, logger="roomwarden.service")
    tasks = [asyncio.create_task(block()),
             asyncio.create_task(feed_watchdog(notifier, list, None, period=0.05, lag=lag))]
    try:
        assert await until(lambda: len(notify_socket.pings()) >= 3, 3.0)
        assert lag.problem() is None
        blocked[0] = True
        assert await until(lambda: any("watchdog withheld: event loop blocked" in s
                                       for s in notify_socket.statuses()), 3.0)
        last = notify_socket.pings()[-1].at
        await asyncio.sleep(0.3)
        assert notify_socket.pings(since=last + 0.001) == []  # withheld for good meanwhile
        assert "event=watchdog_withheld check='event loop blocked: " in caplog.text
        blocked[0] = False
        assert await until(lambda: notify_socket.pings(since=last + 0.001) != [], 3.0)
        assert "running (watchdog resumed)" in notify_socket.statuses()
        assert lag.problem() is None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.slow
async def test_a_service_whose_loop_is_blocked_again_and_again_withholds_its_watchdog(
        tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The real service (gateway, watchdog feeder, control socket) with WatchdogSec=1s: a task
    that blocks its event loop 3 s at a time (as each round did with the journal locked) gets
    the pings withheld and the `event_loop` check degraded; they recover once it stops."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    caplog.set_level(logging.INFO, logger="roomwarden.service")
    async with running_service(tmp_path) as run:
        gw = run.service.gateway
        assert await until(lambda: len(notify_socket.pings()) >= 2, 10.0)

        async def block(times: int) -> None:
            for _ in range(times):
                time.sleep(3.0)  # noqa: ASYNC251 (the whole loop, as SQLite's wait did)
                await asyncio.sleep(0.05)

        blocker = asyncio.create_task(block(4))
        try:
            assert await until(lambda: any("watchdog withheld: event loop blocked" in s
                                           for s in notify_socket.statuses()), 20.0)
            check = run.service.status()["health"]["checks"]["event_loop"]
            assert check["status"] == "degraded" and "event loop blocked" in check["detail"]
            assert "event=watchdog_withheld check='event loop blocked: " in caplog.text
        finally:
            await blocker
        last = notify_socket.pings()[-1].at if notify_socket.pings() else 0.0
        assert await until(lambda: notify_socket.pings(since=last + 0.001) != [], 10.0)
        assert gw.loop_lag.problem() is None
        assert run.service.status()["health"]["checks"]["event_loop"]["status"] == "ok"
