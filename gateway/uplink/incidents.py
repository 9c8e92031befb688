"""Incident records over the uplink: a stored record file (gateway.recorder.store) handed to the
outbox as `IncidentChunk` messages (gateway.contract.incidents), so it travels like an alarm
event — durable before it is published, kept until the ingest's watermark covers every chunk,
re-sent across broker outages and restarts.

The committer numbers the chunks and, in the same commit as the last one, sets the outbox mark
`incident.<id>` to the record version's hash (`incident_mark`), so `is_sent` can tell at the
next start which records never reached the outbox whole (the process died in between, or the
uplink was down or replaced): `gateway.recorder.hook` hands those over again. A record sent
twice is harmless: the ingest keeps one copy per version.

Called from the incident keeper's writer thread (reading a file and base64 take
milliseconds per MiB): never on the event loop. `Committer.add` is thread-safe.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from gateway.contract.wire import ContractError, MessageKind, split_record
from gateway.uplink.items import Item, incident_mark

if TYPE_CHECKING:
    from gateway.uplink.publisher import Uplink

log = logging.getLogger("roomwarden.uplink")

SENT_STATUSES = ("closed", "interrupted")
"""Records that are sent: final ones (an open record is sent when it closes)."""


def is_sent(uplink: Uplink, incident_id: str, data: bytes) -> bool:
    """This version of the record was committed to the outbox whole."""
    name, value = incident_mark(incident_id, hashlib.sha256(data).hexdigest())
    return uplink.outbox.mark(name) == value


def send_record(uplink: Uplink, incident_id: str, status: str, data: bytes) -> int:
    """Hand a record file's bytes to the outbox as chunks; returns how many (0: refused —
    larger than the contract allows —, logged; the record stays on the gateway)."""
    now = uplink.clock.now_ns()
    try:
        chunks = split_record(data, site=uplink.site, gateway=uplink.gateway_id,
                              incident_id=incident_id, status=status, saved=now)
    except ContractError as exc:
        log.error("event=incident_not_sent id=%s error=%r", incident_id, str(exc))
        return 0
    for chunk in chunks:  # the last one commits at once (and marks the record sent)
        uplink.committer.add(Item(MessageKind.ALARM, chunk, now),
                             urgent=chunk.index == chunk.count - 1)
    log.info("event=incident_queued id=%s status=%s bytes=%d chunks=%d", incident_id, status,
             len(data), len(chunks))
    return len(chunks)
