"""docs/influx-schema.md says what gateway.ingest.schema writes (gateway.ingest.schemadoc)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gateway.ingest import schema
from gateway.ingest.schemadoc import SAMPLES, main, table

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "influx-schema.md"


def _quantities() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "hardware" / "profiles").glob("*.yaml"):
        found |= set(re.findall(r"\bquantity:\s*([a-z0-9_]+)", path.read_text("utf-8")))
    assert {"temperature", "h2_lel", "door_open", "smoke"} <= found
    return found


def test_the_generated_parts_are_current(tmp_path: Path) -> None:
    assert main(["--check", str(DOC)]) == 0
    stale = tmp_path / "doc.md"
    stale.write_text(DOC.read_text("utf-8").replace("\nh2_lel,device", "\nhydrogen,device"))
    assert main(["--check", str(stale)]) == 1
    missing = tmp_path / "short.md"
    missing.write_text(re.sub(r"<!-- schema:alarm_history -->.*?<!-- /schema:alarm_history -->",
                              "", DOC.read_text("utf-8"), flags=re.S))
    assert main(["--check", str(missing)]) == 1


def test_the_samples_cover_every_name_the_schema_code_writes() -> None:
    """Every tag and field key in alarm_line, state_line, _telemetry_series and restamped (the
    marks of an alarm event or state of a gateway whose clock is unset) appears in the
    generated tables (so a new field in the code shows up in the document)."""
    for function, sample in ((schema.alarm_line, "alarm_events"),
                             (schema.state_line, "gateway_state"),
                             (schema._telemetry_series, "telemetry"),
                             (schema.restamped, "alarm_events"),
                             (schema.restamped, "gateway_state")):
        keys = set(re.findall(r'"([a-z_]+)":', inspect.getsource(function)))
        documented = table(SAMPLES[sample]())
        for key in keys:
            assert f"`{key}`" in documented, (sample, key)
    assert "`value_text`" in table(SAMPLES["alarm_events"]())
    assert "`dropped_telemetry`" in table(SAMPLES["gateway_state"]())


def test_the_prose_names_only_real_quantities() -> None:
    """The measurements the text names as examples are quantities the profiles have (the old
    text named `hydrogen` and `door`, which nothing writes)."""
    text = DOC.read_text("utf-8")
    sentence = re.search(r"Measurement = the point's `quantity`.*?\)", text, re.S)
    assert sentence
    named = re.findall(r"`([a-z0-9_]+)`", sentence.group(0))
    assert len(named) >= 4
    assert set(named) - {"quantity"} <= _quantities()
    measurements = set(re.findall(r"^([a-z_0-9]+),[a-z_]+=", text, re.M))
    assert measurements - {"alarm_events", "gateway_state", "alarm_history",
                           "unclassified"} <= _quantities()
