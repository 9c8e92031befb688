"""`roomwarden ingest --config central.yaml`: the lead hooks `main` into gateway/cli.py."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from gateway.config.yamlfile import ConfigErrors
from gateway.ingest.service import IngestService
from gateway.ingest.settings import load_settings
from gateway.service.notify import Notifier
from gateway.service.watchdog import feed_watchdog_blocking


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomwarden ingest",
                                     description="MQTT (contract v1) to InfluxDB ingest service")
    parser.add_argument("--config", type=Path, required=True, help="central ingest YAML")
    parser.add_argument("--check", action="store_true",
                        help="validate the config and the files it names (secrets, TLS), "
                             "print it (secrets hidden) and exit: 0 if all is well, 2 if not")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s level=%(levelname)s %(message)s")
    try:
        # the files it names too (secrets, TLS): each missing or unreadable one reported, at
        # --check and at start alike (a missing CA file was a traceback from paho's tls_set)
        settings = load_settings(args.config, check_files=True)
        if args.check:
            print(json.dumps(settings.model_dump(mode="json"), indent=2))
            return 0
        service = IngestService(settings)
    except ConfigErrors as exc:
        print(str(exc), file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        service.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    notifier = Notifier.from_env()
    service.start()
    mqtt, influx = settings.mqtt, settings.influx
    notifier.ready(f"consuming {mqtt.host}:{mqtt.port} into {influx.url}")
    try:
        feed_watchdog_blocking(notifier, service.stopping, [service.liveness])
    finally:
        notifier.stopping()
        service.stop()
    return 1 if service.failed else 0  # Restart=on-failure restarts a writer that failed


if __name__ == "__main__":
    sys.exit(main())
