"""The gateway's `received` status names the version it got (audit: it carried none, so `flash`
printed "received: the gateway got the config" where the README shows "got version 8"): read
from the envelope, like its id, before it is verified. The README's example output of `flash`
is what the real client prints against the real gateway."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gateway.flashing.envelope import sign_config
from gateway.flashing.keys import load_private_key
from tests.apply.conftest import ask, device
from tests.fixtures.services import Broker
from tests.flashing.live import live_gateway

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_flash_output() -> list[str]:
    """The `#   …` output lines of the README's `roomwarden flash` example."""
    section = README.read_text(encoding="utf-8").split("## Flash a config", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line[4:] for line in block.splitlines() if line.startswith("#   ")]
    assert lines and lines[-1].startswith("applied: "), lines
    return [line.split("   (exit", 1)[0] for line in lines]


PLACEHOLDERS = [  # what a README line shows → what the real output has there
    (r"[0-9a-f]{4}…", r"[0-9a-f]{12}"),  # a short hash
    (r"flash-…", r"flash-[0-9a-f]+"),  # a request id
    (r"\b[0-9a-f]{16}\b", r"[0-9a-f]{16}"),  # a key id
    (r"new\.yaml|fsu-gz-tianhe-\d+|gz-tianhe-exchange|ops-guangdong", r"\S+"),  # names
    (r"\d+", r"\d+"),  # versions, sizes, counts
]


def pattern(line: str) -> re.Pattern[str]:
    """A README line as a pattern: its names, numbers and hashes stand for any."""
    shown = re.compile("|".join(f"({left})" for left, _right in PLACEHOLDERS))
    out, at = [], 0
    for match in shown.finditer(line):
        out.append(re.escape(line[at:match.start()]))
        out.append(PLACEHOLDERS[match.lastindex - 1][1])  # type: ignore[operator]
        at = match.end()
    out.append(re.escape(line[at:]))
    return re.compile("".join(out))


def kind(line: str) -> str:
    return line.split(" ", 1)[0]


PROGRESS = ("received:", "staged:", "applying:")
"""Lines a run may lack: the uplink's outbox sends only the newest of a request's unsent
progress statuses (docs/mqtt-contract.md), so one said just before the next can be skipped."""


async def test_received_names_the_version_and_the_readme_output_is_true(
        tmp_path: Path, broker: Broker) -> None:
    async with live_gateway(tmp_path, broker) as live:
        def change(data: dict[str, Any]) -> None:
            device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {"offset": 1}

        code, out, err = await live.flash(live.write("first.yaml", change))
        assert code == 0, (out, err)
        code, out, err = await live.flash(live.write("new.yaml", lambda d: None))
        assert code == 0, (out, err)
        # what the README shows, line by line (a progress line may be skipped, see PROGRESS)
        printed = [line for line in out.splitlines() if not line.startswith("  warning: ")]
        expected = {kind(line): line for line in readme_flash_output()}
        assert [kind(line) for line in readme_flash_output()] == [
            "checked", "the", "sent", "received:", "applying:", "applied:"]
        kinds = [kind(line) for line in printed if kind(line) != "staged:"]  # (rarely sent)
        assert kinds == [k for k in expected if k in kinds or k not in PROGRESS], out
        for line in printed:
            if kind(line) in expected:
                assert pattern(expected[kind(line)]).fullmatch(line), (line, expected)
        if "received:" in kinds:
            assert "received: the gateway got version 2; running version 1 (sha256 " in out

        # every status of a request, as the control socket streams them (no outbox between)
        key = load_private_key(live.ops)
        env = sign_config(live.run.text, gateway=live.gateway_id, version=3, author="ops",
                          private_key=key).model_dump(mode="json")
        answers = await ask(live.run.control, {"op": "apply", "envelope": env})
        said = [(a["progress"]["state"], a["progress"].get("version")) for a in answers
                if "progress" in a]
        assert said[0] == ("received", 3) and said[-1] == ("applied", 3), said
        # a refused one's `received` names its version too (even unsigned)
        del env["signature"], env["key_id"]
        env.update(version=77, id="flash-unsigned-1")
        answers = await ask(live.run.control, {"op": "apply", "envelope": env})
        said = [(a["progress"]["state"], a["progress"].get("version")) for a in answers
                if "progress" in a]
        assert said == [("received", 77), ("rejected", 77)], said
        assert answers[-1]["result"]["code"] in ("unsigned", "bad_signature"), answers[-1]
