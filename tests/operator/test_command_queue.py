"""The operator commands' queue (gateway.operator.command_queue) on a running event loop, with
a real replay memory (SQLite) that another connection holds locked (`BEGIN EXCLUSIVE`, as a
backup or a stuck writer would): commands are answered in the order they arrived, a replay
that arrives while the first write waits is refused as one, at most MAX_WAITING wait (one more
is answered `busy` and not remembered), and a stop waits for the write under way and answers
every command it did not carry out."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.contract.wire import AlarmCommand, RequestState, encode
from gateway.operator import refusals as r
from gateway.operator.command_queue import MAX_WAITING, CommandQueue
from gateway.operator.inbox import Delivery
from tests.fixtures.operators import Keys
from tests.helpers import Locker, until
from tests.operator.test_inbox import Bench, ack


class Answers:
    """What the queue answers, in order: (id, `ok` or the refusal's code)."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)

    def got(self) -> list[tuple[str, str]]:
        return [(d.result.id, "ok" if d.result.ok else str(d.result.code))
                for d in self.deliveries if d.result is not None]


def locked(bench: Bench) -> Locker:
    """Another connection holding the replay memory's file locked (a backup, a stuck writer)."""
    return Locker(bench.path, "EXCLUSIVE")


async def ticks(n: int) -> None:
    """Let the loop run `n` rounds of 10 ms (it is free: nothing waits on the disk here)."""
    for _ in range(n):
        await asyncio.sleep(0.01)


def rig(tmp_path: Path, keys: Keys) -> tuple[Bench, Answers, CommandQueue]:
    bench = Bench(tmp_path, keys)
    answers = Answers()
    return bench, answers, CommandQueue(bench.inbox, answers)


def submit(queue: CommandQueue, cmd: AlarmCommand | RequestState | bytes) -> None:
    queue.submit(cmd if isinstance(cmd, bytes) else encode(cmd), False)


async def under_way(queue: CommandQueue, cmd: AlarmCommand) -> None:
    """Submit `cmd` and wait until its write is under way (it left the queue for the disk)."""
    submit(queue, cmd)
    await until(lambda: queue.waiting() == 0, what="a command's write under way")


async def test_answers_keep_the_order_of_arrival_and_a_replay_during_the_write_is_refused(
        tmp_path: Path, keys: Keys) -> None:
    bench, answers, queue = rig(tmp_path, keys)
    first, second = ack(bench, id="cmd-a"), ack(bench, id="cmd-b")
    unsigned = ack(bench, id="cmd-c").model_copy(update={"signature": None, "key_id": None})
    lock = locked(bench)
    try:
        await under_way(queue, first)
        submit(queue, first)  # redelivered while its id is still being written
        submit(queue, second)
        submit(queue, unsigned)  # refused without the memory, but answered in its turn
        assert queue.waiting() == 3
        await ticks(20)  # the loop runs; nothing is carried out before its id is on disk
        assert answers.got() == [] and bench.recorder.done == []
    finally:
        lock.release()
    await until(lambda: len(answers.got()) == 4, what="four answers")
    assert answers.got() == [("cmd-a", "ok"), ("cmd-a", r.REPLAYED), ("cmd-b", "ok"),
                             ("cmd-c", r.UNSIGNED)]
    assert bench.recorder.done == [("acknowledge", "Zhang Wei (NOC)")] * 2  # a and b, once
    replay = answers.deliveries[1]
    assert replay.outcome == "duplicate" and "(ok)" in str(replay.result and replay.result.error)
    await queue.close()
    # the memory holds both ids and what became of them, also for the next process
    bench.memory.close()
    bench.restart()
    assert bench.memory.seen(first.key_id or "", "cmd-a") is not None
    assert bench.inbox.receive(encode(second), False).outcome == "duplicate"


async def test_refusals_and_request_state_are_answered_at_once_when_nothing_waits(
        tmp_path: Path, keys: Keys) -> None:
    bench, answers, queue = rig(tmp_path, keys)
    lock = locked(bench)  # nothing here may touch the memory: it would wait
    try:
        submit(queue, ack(bench, id="gone", now_ns=bench.now() - 200_000_000_000))
        submit(queue, RequestState(id="req-1", ts=bench.now(), actor="ingest",
                                   action="request_state"))
        submit(queue, b"junk")
        assert answers.got() == [("gone", r.EXPIRED), ("req-1", "ok")]
        assert [d.outcome for d in answers.deliveries] == ["refused", "applied", "bad"]
        assert answers.deliveries[1].republish
    finally:
        lock.release()


async def test_at_most_max_waiting_wait_and_one_more_is_busy_not_remembered(
        tmp_path: Path, keys: Keys) -> None:
    bench, answers, queue = rig(tmp_path, keys)
    cmds = [ack(bench, id=f"cmd-{i}") for i in range(MAX_WAITING + 2)]
    lock = locked(bench)
    try:
        await under_way(queue, cmds[0])
        for cmd in cmds[1:]:
            submit(queue, cmd)
        assert queue.waiting() == MAX_WAITING
        # the one beyond the bound is answered at once, to its id, and not judged further
        assert answers.got() == [(cmds[-1].id, r.BUSY)]
        busy = answers.deliveries[0]
        assert busy.outcome == "refused" and f"{MAX_WAITING} commands already wait" in str(
            busy.result and busy.result.error)
    finally:
        lock.release()
    await until(lambda: len(answers.got()) == MAX_WAITING + 2, what="every answer")
    assert answers.got()[1:] == [(c.id, "ok") for c in cmds[:-1]]
    assert len(bench.recorder.done) == MAX_WAITING + 1
    # not remembered: sent again once the queue is free, it is carried out
    assert bench.memory.seen(cmds[-1].key_id or "", cmds[-1].id) is None
    submit(queue, cmds[-1])
    await until(lambda: answers.got()[-1] == (cmds[-1].id, "ok"), what="the busy one, again")
    assert len(bench.recorder.done) == MAX_WAITING + 2
    await queue.close()


async def test_a_stop_waits_for_the_write_under_way_and_answers_those_waiting(
        tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="roomwarden.operator")
    bench, answers, queue = rig(tmp_path, keys)
    lock = locked(bench)
    try:
        await under_way(queue, ack(bench, id="under-way"))
        submit(queue, ack(bench, id="waiting-1"))
        submit(queue, b"not even json")  # waiting, unjudged: answered when it has an id
        submit(queue, ack(bench, id="waiting-2"))
        closing = asyncio.create_task(queue.close())
        await ticks(20)
        assert not closing.done(), "close() let go while a write was under way"
        submit(queue, ack(bench, id="late"))  # after the stop began: refused at once
        assert answers.got() == [("late", r.UNAVAILABLE)]
    finally:
        lock.release()
    await asyncio.wait_for(closing, 10)
    assert answers.got() == [("late", r.UNAVAILABLE), ("under-way", "ok"),
                             ("waiting-1", r.UNAVAILABLE), ("waiting-2", r.UNAVAILABLE)]
    assert len(answers.deliveries) == 5  # the junk too: counted, no id to answer
    assert bench.recorder.done == [("acknowledge", "Zhang Wei (NOC)")]
    assert "event=command_queue_stopped refused=3" in caplog.text
    assert "gateway stopped before this command's turn came" in str(
        answers.deliveries[-1].result and answers.deliveries[-1].result.error)


async def test_a_cancelled_stop_still_waits_for_the_write_and_carries_nothing_out(
        tmp_path: Path, keys: Keys) -> None:
    bench, answers, queue = rig(tmp_path, keys)
    lock = locked(bench)
    try:
        await under_way(queue, ack(bench, id="under-way"))
        submit(queue, ack(bench, id="waiting"))
        closing = asyncio.create_task(queue.close())
        await ticks(5)
        closing.cancel()  # the process is being torn down
        await ticks(20)
        assert not closing.done(), "the cancelled stop let go while a write was under way"
    finally:
        lock.release()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closing, 10)
    assert answers.got() == [("under-way", r.UNAVAILABLE), ("waiting", r.UNAVAILABLE)]
    assert bench.recorder.done == []
    # its id reached the disk before the stop: a replay of it stays refused
    replay = bench.inbox.receive(encode(ack(bench, id="under-way")), False)
    assert replay.outcome == "duplicate" and bench.recorder.done == []


async def test_a_command_that_expires_while_its_id_is_written_is_answered_expired_not_done(
        tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    """Judged in time, but its validity ran out while the write waited for the locked file:
    not carried out, answered `expired` (saying it waited, and how long ago it expired), its
    id kept as used. Before, the expiry was looked at only when it was judged: it was done."""
    caplog.set_level(logging.WARNING, logger="roomwarden.operator")
    bench, answers, queue = rig(tmp_path, keys)
    late = ack(bench, id="late", lifetime_s=30.0)
    lock = locked(bench)
    try:
        await under_way(queue, late)
        submit(queue, ack(bench, id="behind-short", lifetime_s=30.0))  # judged in its turn
        submit(queue, ack(bench, id="behind-long", lifetime_s=120.0))
        bench.clock.advance(31.0)  # meanwhile the write waits for the lock
        await ticks(5)
        assert answers.got() == [] and bench.recorder.done == []
    finally:
        lock.release()
    await until(lambda: len(answers.got()) == 3, what="three answers")
    assert answers.got() == [("late", r.EXPIRED), ("behind-short", r.EXPIRED),
                             ("behind-long", "ok")]
    assert bench.recorder.done == [("acknowledge", "Zhang Wei (NOC)")]  # behind-long only
    error = str(answers.deliveries[0].result and answers.deliveries[0].result.error)
    assert "expired 1.0 s ago" in error and "while it waited 31.0 s" in error, error
    assert answers.deliveries[0].outcome == "refused"
    assert "event=command_expired_waiting id=late" in caplog.text
    # its id stays used, with what became of it: the same command again (the clock stepped
    # back, so it is valid by its time) is a replay
    await queue.close()
    bench.clock.step_wall(-31.0)
    replay = bench.inbox.receive(encode(late), False)
    assert replay.outcome == "duplicate" and "(expired)" in str(
        replay.result and replay.result.error)
    assert bench.recorder.done == [("acknowledge", "Zhang Wei (NOC)")]
