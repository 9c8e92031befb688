"""What the config sections turned into plain dataclasses (gateway.config.section, issue 15)
are told when refused and read as when accepted, word for word as the pydantic models they
replace: tests/data/sections_as_read.json was written by this file's cases run on 1ccba84
(before the change), each refused section's errors from the loader (file, line, YAML path,
reason) and from `roomwarden check` (with its "did you mean"), each accepted one's
`model_dump(mode="json")`. A section is written at line 13 of tests/data/configs/valid.yaml,
or in place of its line `line` (the gateway, a bus, a device). (`recorder:` and `incidents:`:
tests/recorder/test_settings_refused.py.) Changed since, on purpose (7 Dec 2026): `scale: .inf`
in a point override is refused too (gateway/config/numbers.py), and a panel user's
`password_hash` is parsed as the panel parses it (the two cases with made-up hashes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config.loader import ConfigErrors, load_gateway_config
from gateway.config.section import validator
from gateway.config.site import GatewayConfig
from tests.recorder.test_settings_refused import _site

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "sections_as_read.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["section"][:60] for c in CASES])
def test_a_section_is_refused_or_read_as_before(tmp_path: Path, case: dict[str, Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    if "line" in case:
        path = _site(tmp_path, "")
        lines = path.read_text().splitlines()
        lines[case["line"] - 1] = case["section"]
        path.write_text("\n".join(lines[:12]) + "\n")
    else:
        path = _site(tmp_path, case["section"])
    if "read" in case:
        config = load_gateway_config(path).config
        dump = validator(GatewayConfig).dump_python(config, mode="json")
        assert {key: dump[key] for key in case["read"]} == case["read"]
        return
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(path)
    assert [str(e) for e in caught.value.errors] == [f"{path}:{m}" for m in case["refused"]]
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    assert [line.strip() for line in (out.out + out.err).splitlines()][1:] == [
        f"{path}{line}" for line in case["check"]]
