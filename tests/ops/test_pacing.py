"""The loop share of an HTTP server's handlers (gateway.ops.pacing): requests run at once while
there is credit, wait first come, first served once it is spent, a waiter whose connection is
closed passes its turn on, and a request is charged at most MAX_CHARGE."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ops.pacing import MAX_CHARGE, LoopShare


async def test_requests_run_at_once_while_there_is_credit() -> None:
    share = LoopShare(share=0.5, burst=0.05)
    for _ in range(3):
        await asyncio.wait_for(share.turn(), 1)
        share.spent(0.001)
    assert share.waited == 0


async def test_once_spent_waiters_take_their_turns_in_arrival_order() -> None:
    share = LoopShare(share=0.5, burst=0.005)
    share.spent(0.01)  # credit below zero: the next requests wait
    order: list[int] = []

    async def request(n: int) -> None:
        await share.turn()
        order.append(n)
        share.spent(0.004)

    await asyncio.wait_for(asyncio.gather(*(request(n) for n in range(6))), 10)
    assert order == list(range(6))
    assert share.waited == 6


async def test_a_waiter_that_goes_away_passes_its_turn_on() -> None:
    share = LoopShare(share=0.5, burst=0.005)
    share.spent(0.01)
    first = asyncio.create_task(share.turn())
    second = asyncio.create_task(share.turn())
    await asyncio.sleep(0)
    first.cancel()  # its connection was closed while it waited
    await asyncio.wait_for(second, 5)
    assert first.cancelled()


async def test_a_request_is_charged_at_most_max_charge() -> None:
    share = LoopShare(share=0.5, burst=MAX_CHARGE)
    share.spent(3600.0)  # a handler that awaited a thread for an hour
    assert -MAX_CHARGE <= share._refill() <= 0.0 + 1e-3


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LoopShare(share=0)
    with pytest.raises(ValueError):
        LoopShare(burst=0)
