"""`reset_output` over `cmd`, against a real mosquitto and a real gateway on the shipped
lithium ESS site (its devices simulated on Modbus TCP): after a real off-gas alarm cleared, the
ESS's charge inhibit (`restore_on_clear: false`) stays on; a key that may only acknowledge is
refused `not_permitted`, an unknown output or one not held `not_applicable` with the reason,
and a correctly signed reset by a key that may `reset_output` releases the coil and is
journalled in the key owner's name with the note — never the payload's `actor`."""

from __future__ import annotations

from pathlib import Path

from gateway.alarms.events import OUTPUT_RULE
from gateway.field.sample import Value
from gateway.safety import SafetyCore
from gateway.sim.signals import Constant
from tests.fixtures.operators import Keys
from tests.fixtures.services import Broker
from tests.operator.rig import REPO, rig, until

SITE = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"
INHIBIT, COIL = "charge-inhibit-ess", "do-ess-01.do5"
OWNER = "Zhang Wei (NOC)"


def operators(keys: Keys) -> dict[str, object]:
    return {"keys": [
        {"key": keys.zhang.public.line(), "name": OWNER,
         "may": ["acknowledge", "acknowledge_all", "shelve", "suppress", "reset_output"]},
        {"key": keys.acker.public.line(), "may": ["acknowledge"]},
    ]}


async def test_a_signed_reset_releases_the_charge_inhibit_and_others_are_refused(
        tmp_path: Path, broker: Broker, keys: Keys) -> None:
    async with rig(tmp_path, broker, operators(keys), SITE) as (r, _restart):
        gw = r.gateway_id

        def core() -> SafetyCore:
            return r.gateway.core

        def coil() -> Value:
            return r.site.read_point(COIL)

        r.site.set_signal("offgas-ess-01.co", Constant(value=120.0))
        await until(lambda: coil() is True, 20, "charge inhibit on")
        r.site.set_signal("offgas-ess-01.co", Constant(value=0.0))
        await until(lambda: core().planner.state[INHIBIT].reasons == ["held until reset"],
                    20, "the off-gas alarm cleared, the hold left")
        assert coil() is True

        # not now: the wrong key, an unknown output, and nothing changes
        cases = [
            ("not_permitted", keys.acker.sign(gw, site=r.site_id,
                                              action="reset_output", output=INHIBIT),
             "may not reset_output"),
            ("not_applicable", keys.zhang.sign(gw, site=r.site_id,
                                               action="reset_output", output="nowhere"),
             "unknown output 'nowhere'"),
            ("not_applicable", keys.zhang.sign(gw, site=r.site_id,
                                               action="reset_output", output="siren-ess"),
             "is not held until reset"),
        ]
        for code, cmd, why in cases:
            r.send(cmd)
            answer = await r.answer(cmd.id)
            assert not answer.ok and answer.code == code and why in (answer.error or ""), answer
        assert coil() is True and core().planner.state[INHIBIT].held_by_reset

        reset = keys.zhang.sign(gw, site=r.site_id, action="reset_output", output=INHIBIT,
                                note="cells checked", actor="someone else")
        r.send(reset)
        answer = await r.answer(reset.id)
        assert answer.ok and answer.actor == OWNER, answer
        assert answer.note == f"output {INHIBIT} released"
        await until(lambda: coil() is False, 10, "charge inhibit released")
        journalled = [e for e in core().alarms.events_since(0) if e.rule == OUTPUT_RULE]
        assert [(e.subject, e.actor, e.note) for e in journalled][-1] == (
            INHIBIT, OWNER, "reset: cells checked")

        again = keys.zhang.sign(gw, site=r.site_id, action="reset_output", output=INHIBIT)
        r.send(again)
        answer = await r.answer(again.id)
        assert not answer.ok and answer.code == "not_applicable"


def test_the_reset_output_command_line_builds_the_signed_command() -> None:
    import argparse

    from gateway.operator.cli import _fields, add_parsers

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(["reset-output", "--output", INHIBIT, "--note", "cells checked",
                              "--gateway", "gw-1", "--site", "s", "--broker", "mqtt://x:1"])
    assert _fields(args, None, None) == {"action": "reset_output", "output": INHIBIT,
                                         "note": "cells checked"}
