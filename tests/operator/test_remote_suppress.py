"""A signed `suppress` on `cmd` meets the same refusal as the panel's (one OperatorCommands
behind both): a room whose confirmed fire nobody has acknowledged is not suppressed — the
answer is `not_applicable` naming the fire and saying to acknowledge it first, and siren and
strobe go on. Acknowledged, the room may be suppressed (its strobe then drops). A real
mosquitto, a real gateway, its siren and strobe coils of a simulated relay module."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.alarms.lifecycle import AlarmState
from tests.fixtures.operators import Keys
from tests.fixtures.services import Broker
from tests.operator.rig import FIRE, STROBE, rig, until

HOUR_NS = 3_600_000_000_000


async def test_a_signed_suppression_cannot_hide_an_unacknowledged_fire(
        tmp_path: Path, broker: Broker, keys: Keys) -> None:
    async with rig(tmp_path, broker, keys.operators()) as (r, _restart):
        gw = r.gateway_id
        await r.fire(True)
        refused = keys.zhang.sign(gw, site=r.site_id,
                                  action="suppress", scope="tx-3f", reason="hot work",
                                  until=time.time_ns() + HOUR_NS)
        r.send(refused)
        answer = await r.answer(refused.id)
        assert not answer.ok and answer.code == "not_applicable", answer
        assert answer.error is not None and f"{FIRE}@tx-3f" in answer.error
        assert "acknowledge" in answer.error
        await r.still_sounding()
        assert r.site.read_point(STROBE) is True
        assert r.gateway.core.alarms.suppressions() == []

        ack = keys.zhang.sign(gw, site=r.site_id,
                              action="acknowledge_all", room="tx-3f", note="seen")
        r.send(ack)
        assert (await r.answer(ack.id)).ok
        allowed = keys.zhang.sign(gw, site=r.site_id,
                                  action="suppress", scope="tx-3f", reason="detector fault",
                                  until=time.time_ns() + HOUR_NS)
        r.send(allowed)
        answer = await r.answer(allowed.id)
        assert answer.ok and answer.changed, answer
        assert r.gateway.core.alarms.get(r.fire_key()).state is AlarmState.SUPPRESSED
        await until(lambda: r.site.read_point(STROBE) is False, what="the strobe off")
