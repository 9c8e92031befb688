"""`roomwarden ingest` as a real process under a fake systemd notify socket: READY once it
consumes, WATCHDOG pings while its writer lives, STOPPING and exit code 0 on SIGTERM. The
shipped example central config validates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from gateway.ingest.service import subscriptions
from gateway.ingest.settings import MqttSettings, load_settings
from tests.apply.test_service_process import NotifySocket
from tests.fixtures.services import Broker, Victoria, broker, victoria, wait_for

__all__ = ["broker", "victoria"]

REPO = Path(__file__).resolve().parents[2]


def test_the_example_central_config_validates() -> None:
    settings = load_settings(REPO / "central" / "central.example.yaml")
    # plain subscriptions, as the default: Mosquitto drops shared ones' messages across its
    # restarts (docs/influx-schema.md)
    assert settings.mqtt.shared_group is None and settings.http is not None
    # and leaving the key out is the same: every channel subscribed plainly (README)
    mqtt = settings.mqtt.model_dump(exclude={"shared_group"}, mode="json")
    default = settings.model_copy(update={"mqtt": MqttSettings.model_validate(mqtt)})
    assert default.mqtt.protocol == "5"
    assert all(not f.startswith("$share") for f in subscriptions(default))


def test_ingest_process_tells_systemd_ready_watchdog_and_stopping(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    central = tmp_path / "central.yaml"
    central.write_text(yaml.safe_dump({
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": "5",
                 "client_id": "ingest-process-test", "shared_group": "ingest"},
        "influx": {"url": victoria.url, "token": "t", "org": "o", "bucket": "b"},
        "dead_letter": "dead.jsonl", "catalog_store": "catalogs.sqlite"}))
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000",
           "WATCHDOG_PID": ""}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "ingest", "--config",
                             str(central)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for(lambda: notify.seen("READY=1"), 20, "READY=1")
        wait_for(lambda: notify.seen("WATCHDOG=1"), 10, "a watchdog ping")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert notify.seen("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
