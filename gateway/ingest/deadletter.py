"""Messages the ingest could not write, kept as JSON lines for a person (or a replay) to look at:
`{"time": ns, "topic": ..., "reason": ..., "payload": base64}`."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path


class DeadLetterLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self.count = 0

    def add(self, topic: str, payload: bytes, reason: str, time_ns: int) -> None:
        """Append one record and fsync it (the message is acknowledged right after)."""
        record = {"time": time_ns, "topic": topic, "reason": reason[:2000],
                  "payload": base64.b64encode(payload).decode("ascii")}
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        with self._lock:
            with self.path.open("ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self.count += 1
