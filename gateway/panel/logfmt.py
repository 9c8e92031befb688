"""The panel's structured log lines."""

from __future__ import annotations

import json


def kv(event: str, **fields: object) -> str:
    """One structured log line: `event=... key=value ...`, values with spaces JSON-quoted."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = "" if value is None else str(value)
        if not text or any(c.isspace() or c in '"=\\' for c in text) or not text.isprintable():
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)
