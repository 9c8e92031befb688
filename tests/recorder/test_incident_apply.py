"""A config applied in the middle of an incident (the incident audit): the apply was in no
record — it journalled nothing — so `show` and the report gave the trigger's config version
as if nothing changed; and the applied config's `incidents:` settings were ignored until a
restart (the keeper kept the ones it started with)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.apply.conftest import ask, edit_config
from tests.recorder.conftest import fire_recorded, running_rig, until


async def test_an_apply_mid_incident_is_in_its_record_and_its_settings_apply(
        tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        store, incident_id = await fire_recorded(rig)

        def settings(data: dict[str, Any]) -> None:
            data.setdefault("incidents", {}).update(severity="major", max_incidents=7)

        text = edit_config(rig.gateway.loaded.path.read_text(), settings)
        answers = await ask(rig.control, {"op": "apply", "config": text, "author": "tech"})
        assert answers[-1]["ok"] is True, answers[-1]
        keeper = rig.gateway.recording.keeper
        assert keeper is not None
        await until(lambda: keeper.settings.severity == "major")
        assert rig.gateway.recording.store.max_incidents == 7
        open_incident = keeper.open[store.load(incident_id)["room"]]
        await until(lambda: any(e["kind"] == "config" for e in open_incident.events))
        [applied] = [e for e in open_incident.events if e["kind"] == "config"]
        assert applied["note"].startswith("config v1 applied (local, by tech")


def test_an_incident_longer_than_a_day_is_refused(tmp_path: Path) -> None:
    """An open incident's events are held in memory until it closes: `max_duration` has a
    bound (24 h), refused past it with file, line and path (the incident audit: none)."""
    import pytest
    import yaml

    from gateway.config.loader import ConfigErrors, load_gateway_config
    from tests.apply.conftest import SITE

    data = yaml.safe_load(SITE.read_text())
    data["profiles_dir"] = str(SITE.parents[1] / "hardware" / "profiles")
    data["incidents"] = {"post": "10m", "max_duration": "48h"}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(path)
    assert re.search(rf"^{re.escape(str(path))}:\d+: incidents: max_duration must be at most "
                     "24h", str(caught.value.errors[0])), caught.value.errors
