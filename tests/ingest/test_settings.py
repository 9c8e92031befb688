from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import ConfigErrors
from gateway.ingest.cli import main
from gateway.ingest.settings import load_settings

GOOD = """\
mqtt:
  host: 127.0.0.1
  port: 8883
  protocol: 3.1.1
  client_id: ingest-1
  username: ingest
  password_file: mqtt.pass
influx:
  url: http://127.0.0.1:8086
  token_file: influx.token
  org: ops
  bucket: roomwarden
  flush_interval: 500ms
dead_letter: state/dead.jsonl
"""


def test_loads_and_resolves_paths(tmp_path: Path) -> None:
    (tmp_path / "central.yaml").write_text(GOOD)
    (tmp_path / "influx.token").write_text("secret\n")
    s = load_settings(tmp_path / "central.yaml")
    assert s.mqtt.protocol == "3.1.1" and s.influx.flush_interval == 0.5
    assert s.dead_letter == tmp_path / "state/dead.jsonl"
    assert s.influx_token() == "secret"


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(GOOD.replace("port: 8883", "port: 70000").replace("protocol: 3.1.1",
                                                                      "protocol: 4"))
    with pytest.raises(ConfigErrors) as err:
        load_settings(path)
    text = str(err.value)
    assert f"{path}:3: mqtt.port" in text and f"{path}:4: mqtt.protocol" in text


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "central.yaml").write_text(GOOD.replace("token_file: influx.token",
                                                        "token: abc"))
    (tmp_path / "mqtt.pass").write_text("pw\n")  # --check reads the files it names too
    assert main(["--config", str(tmp_path / "central.yaml"), "--check"]) == 0
    assert "abc" not in capsys.readouterr().out
    (tmp_path / "mqtt.pass").unlink()  # tests/ingest/test_settings_files.py
    assert main(["--config", str(tmp_path / "central.yaml"), "--check"]) == 2
    assert "mqtt.password_file: cannot read" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("mqtt: {}\n")
    assert main(["--config", str(tmp_path / "bad.yaml")]) == 2


def test_http_dedup_and_catalog_wait(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(GOOD)
    s = load_settings(path)
    assert s.http is None and s.catalog_wait == 60 and s.max_parked == 200
    assert s.seen_store == tmp_path / "seen.sqlite"  # next to the catalog store
    path.write_text(GOOD + "http: {bind: 127.0.0.2, port: 9200}\ncatalog_wait: 2m\n"
                    "dedup_store: state/seen.sqlite\n")
    s = load_settings(path)
    assert s.http is not None and (s.http.bind, s.http.port) == ("127.0.0.2", 9200)
    assert s.catalog_wait == 120 and s.seen_store == tmp_path / "state/seen.sqlite"
    path.write_text(GOOD + "http: {port: 70000}\n")
    with pytest.raises(ConfigErrors) as err:
        load_settings(path)
    assert "http.port" in str(err.value)
