"""The profile search path: a site's own `profiles_dir` first, then the shipped library; a
profile that is nowhere is reported with every place looked in and the nearest names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config.loader import ConfigErrors, default_profiles_dir, load_gateway_config

SHIPPED = default_profiles_dir()


def _site(tmp_path: Path, profiles: list[str], profiles_dir: str | None = "my_profiles"
          ) -> Path:
    data = {
        "gateway": {"id": "gw", "site": "s"},
        "rooms": [{"id": "r", "type": "equipment"}],
        "buses": [{"id": "b", "type": "modbus_tcp", "host": "127.0.0.1"}],
        "devices": [{"id": f"d{i}", "bus": "b", "unit": i + 1, "profile": p, "room": "r"}
                    for i, p in enumerate(profiles)],
    }
    if profiles_dir is not None:
        data["profiles_dir"] = profiles_dir
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _own_profile(tmp_path: Path, profile_id: str, source: str = "generic_th_sensor") -> None:
    own = tmp_path / "my_profiles"
    own.mkdir(exist_ok=True)
    data = yaml.safe_load((SHIPPED / f"{source}.yaml").read_text(encoding="utf-8"))
    data["id"] = profile_id
    data["model"] = "site's own model"
    (own / f"{profile_id}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


def test_own_profiles_add_to_the_shipped_library(tmp_path: Path) -> None:
    _own_profile(tmp_path, "acme_th_9000")
    loaded = load_gateway_config(_site(tmp_path, ["acme_th_9000", "generic_h2_detector"]))
    assert loaded.profiles["acme_th_9000"].model == "site's own model"
    assert loaded.profiles["generic_h2_detector"].id == "generic_h2_detector"


def test_an_own_profile_replaces_a_shipped_one_of_the_same_id(tmp_path: Path) -> None:
    _own_profile(tmp_path, "generic_th_sensor")
    loaded = load_gateway_config(_site(tmp_path, ["generic_th_sensor"]))
    assert loaded.profiles["generic_th_sensor"].model == "site's own model"


def test_profile_not_found_names_where_it_looked_and_the_nearest_names(tmp_path: Path
                                                                        ) -> None:
    _own_profile(tmp_path, "acme_th_9000")
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(_site(tmp_path, ["generic_th_sensr", "acme_th_900"]))
    text = str(caught.value)
    assert "profile 'generic_th_sensr' not found" in text
    assert str(tmp_path / "my_profiles") in text and str(SHIPPED) in text
    assert "nearest: generic_th_sensor" in text
    assert "nearest: acme_th_9000" in text


def test_without_profiles_dir_only_the_shipped_library(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(_site(tmp_path, ["no_such_model_at_all"], profiles_dir=None))
    text = str(caught.value)
    assert f"looked for no_such_model_at_all.yaml in {SHIPPED}" in text
    assert "nearest" not in text
