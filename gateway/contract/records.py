"""Incident records as files (docs/incidents.md), without pydantic: the record's format, the
size limits both sides hold it to, and `parse_record`, which a gateway's recorder uses at rest
and the ingest uses on what it reassembled (issue 15: a running gateway imports no pydantic;
the chunk model, `IncidentChunk`, is in gateway.contract.incidents, which re-exports these).
"""

import json
import zlib
from typing import Any

from gateway.contract.vocab import ContractError

INCIDENT_FORMAT = "roomwarden-incident/1"
"""The `format` of an incident record (docs/incidents.md)."""
CHUNK_BYTES = 256 * 1024
"""Record bytes per chunk (base64 makes a payload of ≈ 342 KiB, well within 2 MiB)."""
MAX_INCIDENT_BYTES = 64 * 2**20
"""Largest stored record (gzip-compressed) sent over the uplink: at most 256 chunks."""
MAX_CHUNKS = MAX_INCIDENT_BYTES // CHUNK_BYTES
MAX_RECORD_BYTES = 256 * 2**20
"""A record larger than this uncompressed is refused when read (on either side)."""


def parse_record(data: bytes, what: str = "incident record") -> dict[str, Any]:
    """A record file's bytes (gzip-compressed JSON) as the record, decompressing at most
    MAX_RECORD_BYTES; ContractError saying why if it is not a readable `INCIDENT_FORMAT`
    record."""
    inflate = zlib.decompressobj(wbits=31)  # gzip
    try:
        raw = inflate.decompress(data, MAX_RECORD_BYTES + 1)
        if len(raw) > MAX_RECORD_BYTES or inflate.unconsumed_tail:
            raise ContractError(f"{what} is larger than {MAX_RECORD_BYTES} bytes")
        if not inflate.eof:
            raise ContractError(f"{what} cannot be read: the gzip data is truncated")
    except zlib.error as exc:
        raise ContractError(f"{what} cannot be read: {exc}") from None
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != INCIDENT_FORMAT:
        raise ContractError(f"{what} is not a {INCIDENT_FORMAT} record")
    return record
