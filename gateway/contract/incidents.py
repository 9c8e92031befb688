"""Incident records on the wire: one stored incident record (the gateway's gzip-compressed JSON
file, docs/incidents.md) split into `IncidentChunk` messages on `<root>/<site>/<gateway>/
incidents`, each within the payload limit, reassembled by the ingest into the same bytes.

A chunk names its record version by the SHA-256 of the whole file (`sha256`) and its total
size (`size`); `index` runs 0 … `count` − 1 and every chunk but the last carries exactly
`CHUNK_BYTES` of the file (base64 in `data`), so a receiver can check each chunk as it comes
and the whole when the last one is in. `saved` is when the gateway handed this version to its
outbox: of two versions of one incident id the later one wins.

Pure: `split_record` (file bytes → chunks) and `chunk_bytes` (a chunk's decoded data, checked
against its place in the record) are what the gateway's uplink and the central ingest share.
The record's format, its size limits and `parse_record` live in gateway.contract.records, which
imports no pydantic (a gateway's recorder uses them at rest, issue 15); they are re-exported
here.
"""

import base64
import binascii
import hashlib
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from gateway.contract.base import Ns, Sha256, validated
from gateway.contract.records import (
    CHUNK_BYTES,
    INCIDENT_FORMAT,
    MAX_CHUNKS,
    MAX_INCIDENT_BYTES,
    MAX_RECORD_BYTES,
    parse_record,
)
from gateway.contract.telemetry import Delivered
from gateway.contract.vocab import ContractError

__all__ = [
    "CHUNK_BYTES", "INCIDENT_FORMAT", "MAX_CHUNKS", "MAX_INCIDENT_BYTES", "MAX_RECORD_BYTES",
    "IncidentChunk", "IncidentId", "chunk_bytes", "parse_record", "split_record",
]

_B64_CHUNK = 4 * ((CHUNK_BYTES + 2) // 3)

IncidentId = Annotated[str, StringConstraints(
    pattern=r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_.-]{1,80}-[0-9]{1,20}$", max_length=120)]
"""`<trigger time UTC, YYYYMMDDTHHMMSSZ>-<room>-<journal seq of the trigger>`."""


class IncidentChunk(Delivered):
    """One piece of a stored incident record (outbox kind `alarm`: sent before telemetry,
    dropped last, and kept until the ingest's watermark covers it)."""

    id: IncidentId
    status: Literal["open", "closed", "interrupted"]
    """The record's status (a gateway sends closed and interrupted records)."""
    sha256: Sha256
    """SHA-256 (hex) of the whole record file (gzip-compressed JSON)."""
    size: Annotated[int, Field(ge=1, le=MAX_INCIDENT_BYTES)]
    """Bytes of the whole record file."""
    saved: Ns
    """When the gateway sent this version (the later of two versions of one id wins)."""
    index: Annotated[int, Field(ge=0, lt=MAX_CHUNKS)]
    count: Annotated[int, Field(ge=1, le=MAX_CHUNKS)]
    data: Annotated[str, StringConstraints(min_length=4, max_length=_B64_CHUNK,
                                           pattern=r"^[A-Za-z0-9+/]+={0,2}$")]
    """This chunk's bytes of the file, base64."""

    @model_validator(mode="after")
    def _layout(self) -> Self:
        if self.count != -(-self.size // CHUNK_BYTES):
            raise ValueError(f"count {self.count} does not fit size {self.size} "
                             f"({CHUNK_BYTES} bytes a chunk)")
        if self.index >= self.count:
            raise ValueError(f"index {self.index} is not below count {self.count}")
        if len(self.data) != 4 * ((self.expected_length + 2) // 3):
            raise ValueError(f"data holds {len(self.data)} base64 characters, chunk "
                             f"{self.index} of a {self.size}-byte record needs "
                             f"{self.expected_length} bytes")
        return self

    @property
    def expected_length(self) -> int:
        """Bytes this chunk must carry: CHUNK_BYTES, the remainder for the last one."""
        if self.index < self.count - 1:
            return CHUNK_BYTES
        return self.size - CHUNK_BYTES * (self.count - 1)


def chunk_bytes(chunk: IncidentChunk) -> bytes:
    """The chunk's bytes of the record; ContractError if they are not what its place needs."""
    try:
        data = base64.b64decode(chunk.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractError(f"incident {chunk.id} chunk {chunk.index}: bad base64: {exc}"
                            ) from None
    if len(data) != chunk.expected_length:
        raise ContractError(f"incident {chunk.id} chunk {chunk.index}: {len(data)} bytes, "
                            f"expected {chunk.expected_length}")
    return data


def split_record(data: bytes, *, site: str, gateway: str, incident_id: str, status: str,
                 saved: int) -> list[IncidentChunk]:
    """A stored record file as chunks (validated); ContractError if it cannot travel (empty,
    larger than MAX_INCIDENT_BYTES, a bad id or status)."""
    if not data:
        raise ContractError(f"incident {incident_id}: the record is empty")
    if len(data) > MAX_INCIDENT_BYTES:
        raise ContractError(f"incident {incident_id}: {len(data)} bytes exceed "
                            f"{MAX_INCIDENT_BYTES}")
    digest = hashlib.sha256(data).hexdigest()
    count = -(-len(data) // CHUNK_BYTES)
    return [validated(IncidentChunk, site=site, gateway=gateway, id=incident_id,
                      status=status, sha256=digest, size=len(data), saved=saved, index=i,
                      count=count,
                      data=base64.b64encode(data[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES]
                                            ).decode("ascii"))
            for i in range(count)]
