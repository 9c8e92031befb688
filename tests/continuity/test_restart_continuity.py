"""Alarms stay raised through restarts of a real `roomwarden run` process: a SIGTERM (a clean
stop, `systemctl restart`) and a SIGKILL (a crash), each followed by a start on the same state
directory, while the five alarms of five kinds are held active (see test_apply_continuity).

Watched through the panel's `/api/state` every 100 ms (it does not answer while no process
runs), the relay module's coil writes and the uplink's alarm topic on a real Mosquitto: every
answer shows each alarm in its state with its activation time, the siren coil is never written
off (the siren is `on_stop: hold`: a planned stop leaves it sounding), no alarm event is
journalled or published because of the restart."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests.apply.test_service_process import GatewayProcess, processes
from tests.continuity.conftest import (
    THRESHOLD,
    Observer,
    check_held,
    journal_events,
    last_seq,
    raise_hazards,
    read_state,
    settle,
    simulated,
    until,
    watched,
)
from tests.fixtures.services import Broker, Subscriber

__all__ = ["processes"]  # the fixture, shared with tests/apply

WATCH_AFTER_START = 5.0
"""Seconds of answers from the restarted process that are watched (data flowing again)."""


async def restart(gw: GatewayProcess, observer: Observer, sig: signal.Signals) -> None:
    """Stop the process with `sig`, start it again, watch until it answered for a while."""
    assert gw.proc is not None
    gw.proc.send_signal(sig)
    code = await asyncio.to_thread(gw.proc.wait, 30)
    assert code == (0 if sig is signal.SIGTERM else -signal.SIGKILL), code
    down = time.monotonic()
    gw.start()
    await until(lambda: any(p.alarms is not None and p.at > down for p in observer.polls), 60,
                "the restarted gateway's panel")
    back = next(p.at for p in observer.polls if p.alarms is not None and p.at > down)
    await until(lambda: observer.polls[-1].at - back >= WATCH_AFTER_START, 30,
                "answers of the restarted gateway")


async def test_alarms_stay_raised_through_a_sigterm_and_a_crash_restart(
        tmp_path: Path, broker: Broker, subscribers: list[Subscriber],
        processes: list[GatewayProcess]) -> None:
    async with simulated(tmp_path) as site:
        factory, observer = watched(site, tmp_path, broker, subscribers)
        state = tmp_path / "state"
        journal = state / "alarms.sqlite"
        gw = GatewayProcess(factory, state, tmp_path / "control.sock")
        processes.append(gw)
        gw.start()
        await until(lambda: gw.status() is not None, 60, "the gateway up")
        raise_hazards(site)
        expected = await settle(observer, journal)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            seq = last_seq(journal)
            began = observer.start()
            try:
                await restart(gw, observer, sig)
            finally:
                await observer.stop()
            answered = check_held(observer, expected,
                                  min_answers=int(WATCH_AFTER_START / 0.1 * 0.25))
            assert any(p.alarms is None for p in observer.polls), "the panel never went away"
            assert journal_events(journal, seq) == [], sig
            assert observer.alarm_events_published(began, seq) == [], sig
            siren_on = [w for w in observer.writes if w[1] == 0 and w[2]]
            assert len(siren_on) <= 1, siren_on  # at most the new driver's first command
            assert answered > 0
        assert site.read_point("do-tx-01.do1") is True
        assert gw.status() is not None
        assert (await read_state(observer)).get(THRESHOLD) == expected[THRESHOLD]
