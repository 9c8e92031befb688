"""`roomwarden flash` reads the gateway's retained `config/status` on every site of its id
(`roomwarden/+/<gateway>/config/status`, to see a gateway that runs at another site than the
config says). Through the broker as shipped (central/mosquitto: client certificates and its
ACL, where `flasher` may read `roomwarden/+/+/config/status`), that wildcard subscription is
accepted and the status read: the client numbers from its `highest_accepted`, and says so when
the gateway reports from another site."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.contract.wire import ConfigStatus, encode
from gateway.flashing.flash_client import FlashOptions, flash
from gateway.flashing.keys import new_key_pair
from tests.central.shipped import MOSQUITTO_PASSWD, OPENSSL, Pki, ShippedBroker, make_pki
from tests.fixtures.services import MOSQUITTO

REPO = Path(__file__).resolve().parents[2]
SITE_FILE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
SITE, GW = "gz-tianhe-exchange", "fsu-gz-tianhe-0301"

pytestmark = pytest.mark.skipif(
    OPENSSL is None or not Path(MOSQUITTO).exists() or not Path(MOSQUITTO_PASSWD).exists(),
    reason="needs openssl and mosquitto (with mosquitto_passwd)")


def publish_retained(broker: ShippedBroker, pki: Pki, identity: str, status: ConfigStatus
                     ) -> None:
    """As the gateway's own certificate (the ACL lets it write only its own topics)."""
    ident = pki[identity]
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{os.getpid()}-gw")
    client.tls_set(ca_certs=str(pki.ca), certfile=str(ident.cert), keyfile=str(ident.key))
    client.on_connect = lambda *_a: done.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert done.wait(10), "the gateway identity did not connect"
        topic = f"roomwarden/{status.site}/{status.gateway}/config/status"
        client.publish(topic, encode(status), qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def run_flash(broker: ShippedBroker, pki: Pki, key: Path) -> tuple[int, str, str]:
    flasher = pki["flasher"]
    out, err = io.StringIO(), io.StringIO()
    options = FlashOptions(config=SITE_FILE, gateway=GW, broker=f"mqtts://127.0.0.1:"
                           f"{broker.port}", key=key, timeout=1.0, ca_file=str(pki.ca),
                           cert_file=str(flasher.cert), key_file=str(flasher.key))
    code = flash(options, out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_flash_client_reads_the_status_through_the_shipped_acl(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", [(SITE, GW), ("gz-old-exchange", GW)], ["flasher"])
    broker = ShippedBroker(tmp_path / "broker", pki)
    broker.start()
    key, _ = new_key_pair(tmp_path / "keys", "ops")
    try:
        status: dict[str, Any] = {"site": SITE, "gateway": GW, "ts": time.time_ns(),
                                  "state": "rejected", "version": 2**63 - 1,
                                  "active_version": 7, "highest_accepted": 9}
        publish_retained(broker, pki, f"{SITE}/{GW}", ConfigStatus.model_validate(status))
        code, out, err = run_flash(broker, pki, key)
        assert code == 1, (out, err)  # nothing answers: only the status was there to read
        assert "the gateway runs version 7 (sha256 ?), highest accepted 9; sending " \
               "version 10" in out, out
        assert f"to roomwarden/{SITE}/{GW}/config/set" in out
        # the same gateway id, reporting (later) from another site: the config would move it
        moved = {**status, "site": "gz-old-exchange", "ts": time.time_ns()}
        publish_retained(broker, pki, f"gz-old-exchange/{GW}",
                         ConfigStatus.model_validate(moved))
        code, out, err = run_flash(broker, pki, key)
        assert code == 2, (out, err)
        assert (f"this config moves the gateway from site gz-old-exchange (where it reports "
                f"its config/status) to site {SITE}") in err
    finally:
        broker.stop()
