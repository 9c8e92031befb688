"""Refused `config/set` messages are logged within a budget, like refused `cmd` messages (audit:
3,000 unsigned `config/set` messages produced 974 WARNING lines in about a second): at most 30
lines a minute, the rest counted — the next line, or a line at the end of the minute, says
how many were left out — and every line carries the running total."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from gateway.flashing.envelope import sign_config
from gateway.flashing.keys import load_private_key
from tests.apply.test_flash_mqtt import statuses
from tests.fixtures.services import Broker
from tests.flashing.live import live_gateway
from tests.helpers import until

LOGGER = "roomwarden.flashing"
LOG_BUDGET = 30


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.getMessage().startswith(f"event={event} ")]


def test_refusals_beyond_the_budget_are_counted_and_said_later(
        caplog: pytest.LogCaptureFixture) -> None:
    from gateway.flashing.rejections import LOG_BUDGET, RejectionLog

    now = [1000.0]
    log = RejectionLog(clock=lambda: now[0])
    caplog.set_level(logging.INFO, LOGGER)
    for n in range(100):
        log.rejected_line("flash", f"flash-{n}", "unsigned", "the envelope has no signature")
    said = lines(caplog, "config_rejected")
    assert LOG_BUDGET == 30 and len(said) == 30
    assert said[0].endswith("rejected_total=1") and said[-1].endswith("rejected_total=30")
    assert (log.rejected, log.suppressed) == (100, 70)
    now[0] += 60
    log.rejected_line("flash", "flash-100", "unsigned", "the envelope has no signature")
    last = lines(caplog, "config_rejected")[-1]
    assert last.endswith("rejected_total=101 suppressed=70"), last
    assert log.suppressed == 0


async def test_a_flood_that_stops_is_summed_up_at_the_end_of_the_window(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.flashing.rejections as rejections

    monkeypatch.setattr(rejections, "LOG_WINDOW_S", 0.3)
    caplog.set_level(logging.INFO, LOGGER)
    log = rejections.RejectionLog()
    for n in range(45):
        log.rejected_line("flash", f"flash-{n}", "unsigned", "no signature")
    assert len(lines(caplog, "config_rejected")) == 30
    await asyncio.sleep(0.5)
    assert lines(caplog, "config_rejected_suppressed") == [
        "event=config_rejected_suppressed count=15 window_s=0 rejected_total=45"]


async def test_a_flood_of_unsigned_config_sets_logs_at_most_the_budget(
        tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with live_gateway(tmp_path, broker) as live:
        applier = live.run.service.applier
        env = sign_config(live.run.text, gateway=live.gateway_id, version=5, author="x",
                          private_key=load_private_key(live.ops)).model_dump(mode="json")
        del env["signature"], env["key_id"]  # unsigned
        payload = json.dumps(env).encode()
        sent = [live.pub.client.publish(live.set_topic, payload, qos=1) for _ in range(3000)]
        await asyncio.to_thread(sent[-1].wait_for_publish, 30)
        uplink = live.run.service.gateway.uplink
        assert uplink is not None
        previous, loop = -1, asyncio.get_running_loop()
        deadline = loop.time() + 60
        while uplink.status().config_sets != previous or applier._tasks:  # flood handled
            assert loop.time() < deadline, "the flood was not handled"
            previous = uplink.status().config_sets
            await asyncio.sleep(1.0)
        assert previous > LOG_BUDGET  # (what the gateway's inbound queue let through)
        said = lines(caplog, "config_rejected")
        assert len(said) == LOG_BUDGET, len(said)
        # (each refused as unsigned, or — beyond the few waiting to be verified — as busy)
        assert all("code=unsigned" in line or "code=busy" in line for line in said), said[:3]
        refused = applier.rejections.rejected
        assert refused == previous  # every one refused, and counted
        assert applier.rejections.suppressed == refused - LOG_BUDGET  # counted, said later
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING
                    and r.name == LOGGER]
        assert len(warnings) == LOG_BUDGET


async def test_a_flood_of_large_junk_config_sets_never_holds_the_event_loop(
        tmp_path: Path, broker: Broker) -> None:
    """30 unsigned `config/set` payloads of 1 MiB shaped to be costly (an object holding a list
    of 349,000 empty objects: half a second of a core each in the model's error path) were
    read and verified on the event loop, each in a task of its own, and held it 15 s (the
    audit: a siren 18 s late). Now envelopes are verified one at a time in a worker thread, at
    most four wait, the rest are refused `busy` unread, and a nested field is refused before
    the model reads it: the loop keeps its turns, every envelope gets its answer, and a signed
    config flashed after the flood is applied."""
    async with live_gateway(tmp_path, broker) as live:
        applier = live.run.service.applier
        junk = ('{"x":[' + ",".join(["{}"] * 349_000) + "]}").encode()
        gaps: list[float] = []

        async def ticker() -> None:
            last = asyncio.get_running_loop().time()
            while True:
                await asyncio.sleep(0.005)
                now = asyncio.get_running_loop().time()
                gaps.append(now - last)
                last = now

        tick = asyncio.get_running_loop().create_task(ticker())
        sent = [live.pub.client.publish(live.set_topic, junk, qos=1) for _ in range(30)]
        await asyncio.to_thread(sent[-1].wait_for_publish, 30)
        await until(lambda: applier.rejections.rejected == 30, 60, "30 junk envelopes refused")
        tick.cancel()
        assert max(gaps) < 1.0, f"the event loop was held {max(gaps):.2f} s"
        codes = [s.get("code") for s in statuses(live.sub, live.status_topic)
                 if s["state"] == "rejected"]
        assert set(codes) <= {"busy", "malformed"} and "malformed" in codes, codes
        text = live.write("after.yaml", lambda data: None).read_text()
        answer = await live.send(text, 20)
        assert answer["state"] == "applied", answer
