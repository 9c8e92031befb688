"""Messages the ingest could not write, kept as JSON lines for a person (or a replay) to look at,
in a bounded space.

One record per message::

    {"time": ns, "topic": ..., "reason": ..., "length": bytes, "sha256": hex,
     "payload": base64, "truncated": false}

A message that decoded — a contract message refused for what it says: an unknown catalog, a
gateway clock out of bounds, the database's refusal, a series budget — is kept whole up to
`max_whole` bytes (default the contract's payload limit, 2 MiB: every such message fits), so
it can be replayed; its gateway has been acknowledged and holds it no more. A payload that did
not decode (junk, a message refused for its size) is kept whole up to `max_payload` bytes
(default 16 KiB); a larger one keeps only its first `prefix` bytes (default 1 KiB) with its
full length and SHA-256 (`"truncated": true`), enough to recognise it, never enough to fill the
disk. Topics are cut at 1,024 characters and reasons at 2,000.

The log rotates: when the current file would pass `max_file_bytes` (default 16 MiB) it becomes
`<name>.1`, `<name>.1` becomes `<name>.2` …, and the oldest beyond `keep` (default 3) is
deleted, so the log never takes more than (keep + 1) × max_file_bytes (64 MiB by default).
Files are created 0600. Each record is fsynced before the message is acknowledged (the
records of one write batch together: `add_many`)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import BinaryIO

from gateway.contract.vocab import MAX_PAYLOAD_BYTES
from gateway.storage import append_private, private_dir

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 16 * 1024 * 1024
KEEP = 3
MAX_PAYLOAD = 16 * 1024
MAX_WHOLE = MAX_PAYLOAD_BYTES
PREFIX = 1024
MAX_TOPIC = 1024
MAX_REASON = 2000


class DeadLetterLog:
    """Thread-safe. `count`: records written since start; `rotations`: files rotated."""

    def __init__(self, path: Path, *, max_file_bytes: int = MAX_FILE_BYTES, keep: int = KEEP,
                 max_payload: int = MAX_PAYLOAD, prefix: int = PREFIX,
                 max_whole: int = MAX_WHOLE) -> None:
        """`max_whole` is lowered to what half a file holds (base64: 4 bytes for 3)."""
        if keep < 0 or prefix > max_payload or max_file_bytes < 4 * (max_payload + 4096):
            raise ValueError("dead-letter limits: keep >= 0, prefix <= max_payload, "
                             "max_file_bytes >= 4 records of max_payload")
        private_dir(path.parent)
        self.path = path
        self.max_file_bytes = max_file_bytes
        self.keep = keep
        self.max_payload = max_payload
        self.prefix = prefix
        self.max_whole = max(max_payload, min(max_whole, (max_file_bytes // 2 - 4096) * 3 // 4))
        self._lock = threading.Lock()
        self.count = 0
        self.rotations = 0
        self._file: BinaryIO | None = None
        self._size = 0

    @property
    def cap_bytes(self) -> int:
        """The most the log's files take together."""
        return (self.keep + 1) * self.max_file_bytes

    def cut(self, payload: bytes, *, decoded: bool = False
            ) -> tuple[bytes, tuple[int, str] | None]:
        """What a record of `payload` keeps: (payload, None) if whole, else (its prefix,
        (length, SHA-256)) — to hold a dead message in no more than its record needs.
        `decoded`: the payload is a contract message (whole up to `max_whole`)."""
        if len(payload) <= (self.max_whole if decoded else self.max_payload):
            return payload, None
        return payload[:self.prefix], (len(payload), hashlib.sha256(payload).hexdigest())

    def record(self, topic: str, payload: bytes, reason: str, time_ns: int,
               cut: tuple[int, str] | None = None, *, decoded: bool = False) -> bytes:
        """One JSON line for a message (see the module docstring); `cut`: `payload` is
        already the prefix of a payload of that (length, SHA-256) (`cut()`)."""
        if cut is None:
            payload, cut = self.cut(payload, decoded=decoded)
        kept, (length, digest) = payload, cut or (len(payload), "")
        entry = {"time": time_ns, "topic": topic[:MAX_TOPIC], "reason": reason[:MAX_REASON],
                 "length": length, "sha256": digest or hashlib.sha256(payload).hexdigest(),
                 "payload": base64.b64encode(kept).decode("ascii"), "truncated": cut is not None}
        return (json.dumps(entry, ensure_ascii=False) + "\n").encode()

    def add(self, topic: str, payload: bytes, reason: str, time_ns: int,
            cut: tuple[int, str] | None = None, *, decoded: bool = False) -> None:
        """Append one record and fsync it (the message is acknowledged right after)."""
        data = self.record(topic, payload, reason, time_ns, cut, decoded=decoded)
        with self._lock:
            handle = self._open()
            if self._size and self._size + len(data) > self.max_file_bytes:
                handle = self._rotate()
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            self._size += len(data)
            self.count += 1

    def add_many(self, records: list[tuple[str, bytes, str, tuple[int, str] | None, bool]],
                 time_ns: int) -> None:
        """Append (topic, payload, reason, cut, decoded) records and fsync once (before the
        messages are acknowledged): a flood of dead letters — a gateway past its series
        budget — costs one fsync a write batch, not one a message."""
        if not records:
            return
        data = [self.record(topic, payload, reason, time_ns, cut, decoded=decoded)
                for topic, payload, reason, cut, decoded in records]
        with self._lock:
            handle = self._open()
            for line in data:
                if self._size and self._size + len(line) > self.max_file_bytes:
                    handle.flush()
                    os.fsync(handle.fileno())
                    handle = self._rotate()
                handle.write(line)
                self._size += len(line)
                self.count += 1
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._file = append_private(self.path)
            self._size = os.fstat(self._file.fileno()).st_size
        return self._file

    def _rotate(self) -> BinaryIO:
        if self._file is not None:
            self._file.close()
            self._file = None
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        if self.keep == 0:
            oldest = self.path
        oldest.unlink(missing_ok=True)
        for index in range(self.keep - 1, -1, -1):
            source = self.path if index == 0 else self.path.with_name(
                f"{self.path.name}.{index}")
            if source.exists():
                os.replace(source, self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.rotations += 1
        log.warning("event=dead_letter_rotated path=%s keep=%d max_file_bytes=%d", self.path,
                    self.keep, self.max_file_bytes)
        return self._open()
