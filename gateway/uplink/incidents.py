"""Incident records over the uplink: a stored record file (gateway.recorder.store) handed to the
outbox as `IncidentChunk` messages (gateway.contract.incidents), so it travels like an alarm
event — durable before it is published, kept until the ingest's watermark covers every chunk,
re-sent across broker outages and restarts.

A record goes to the committer as one item (`Record`), so all its chunks enter the outbox in
one commit. One whose chunks would take more than half the outbox budget
(gateway.uplink.budget.RECORD_SHARE) is not queued at all: refused whole, logged, not marked —
it stays in the gateway's incident store (`roomwarden incident export`), and is tried again
(and refused again, unless the budget grew) at the next start. Under the budget, queued records
are dropped after telemetry and before alarm events, a whole record at a time
(gateway.uplink.budget).

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

from gateway.contract.channels import Channel, Topic
from gateway.contract.vocab import ContractError, MessageKind
from gateway.uplink.budget import incident_mark, record_fits, record_limit
from gateway.uplink.items import Item, Record

if TYPE_CHECKING:
    from gateway.uplink.publisher import Uplink

log = logging.getLogger("roomwarden.uplink")

SENT_STATUSES = ("closed", "interrupted")
"""Records that are sent: final ones (an open record is sent when it closes)."""
NUMBERING_BYTES = 64
"""What the writer adds to a chunk's payload when it numbers it (`"stream":…,"dseq":…`), at
most."""


def is_sent(uplink: Uplink, incident_id: str, data: bytes) -> bool:
    """This version of the record was committed to the outbox whole."""
    name, value = incident_mark(incident_id, hashlib.sha256(data).hexdigest())
    return uplink.outbox.mark(name) == value


def send_record(uplink: Uplink, incident_id: str, status: str, data: bytes) -> int:
    """Hand a record file's bytes to the outbox as chunks, all in one commit; returns how many
    (0: refused — larger than the contract allows, or than its share of the outbox budget —,
    logged, not marked sent; the record stays on the gateway)."""
    from gateway.contract.codec import encode  # (the chunks are models: issue 15, at the first)
    from gateway.contract.incidents import split_record

    now = uplink.clock.now_ns()
    try:
        chunks = split_record(data, site=uplink.site, gateway=uplink.gateway_id,
                              incident_id=incident_id, status=status, saved=now)
    except ContractError as exc:
        log.error("event=incident_not_sent id=%s error=%r", incident_id, str(exc))
        return 0
    topic = str(Topic(uplink.site, uplink.gateway_id, Channel.INCIDENTS, uplink.settings.root))
    budget = uplink.outbox.budget_bytes
    fits, need = record_fits((len(encode(c)) + NUMBERING_BYTES for c in chunks),
                             len(topic.encode()), budget)
    if not fits:
        log.error("event=incident_not_sent id=%s status=%s bytes=%d chunks=%d "
                  "reason=outbox_budget needs=%d limit=%d budget=%d (larger than its share "
                  "of uplink.outbox.budget_mb: not sent; the record stays on the gateway: "
                  "roomwarden incident export %s)", incident_id, status, len(data),
                  len(chunks), need, record_limit(budget), budget, incident_id)
        return 0
    # one item: every chunk in one commit, the last one marking the record sent
    uplink.committer.add(Item(MessageKind.ALARM, Record(tuple(chunks)), now), urgent=True)
    log.info("event=incident_queued id=%s status=%s bytes=%d chunks=%d", incident_id, status,
             len(data), len(chunks))
    return len(chunks)
