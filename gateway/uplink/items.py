"""Items for the outbox, and how the committer's writer thread encodes and puts them.

An `Item` is what the event loop hands the committer: a poll cycle's telemetry, a contract
message (alarm event, alarm snapshot, command result), the gateway's state or point catalog
(which encode themselves without a model: gateway.contract.outbound) or a whole incident
record (`Record`:
its chunks are put together, so they enter the outbox in one commit — the budget never finds
part of a record). `ItemWriter` turns one
into outbox messages on the writer thread: the sequence numbers (`seq`, `dseq`) are taken just
before the put (reserved in blocks: gateway.uplink.outbox_numbers). Telemetry is put held
(in memory until acknowledged: gateway.uplink.outbox_held); the rest is committed.

Telemetry is encoded once, on the event loop as the poll's samples arrive (`telemetry_items`:
`TelemetryEncoder.prepare`, gateway.contract.telemetry_encoder — the rows' JSON, the model's
exact bytes without the model, while the samples are still in the CPU's cache), and the writer
only adds the envelope with the numbers (`TelemetryEncoder.payload`). What the encoder leaves
(what breaks the contract: a bad point id, a string over 200 characters) travels as the samples
and is built on the writer through `TelemetryBatch`, which names the offending samples: they
are rejected, the rest is sent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from gateway.contract.alarm_reports import EventReport, SnapshotReport
from gateway.contract.channels import CHANNELS, Channel
from gateway.contract.outbound import CatalogReport, OutboundMessage, StateReport
from gateway.contract.telemetry_encoder import EncodedRows, TelemetryEncoder
from gateway.contract.vocab import MAX_BATCH_ROWS, ContractError, MessageKind
from gateway.field.sample import Sample
from gateway.records import dataclass
from gateway.uplink.budget import incident_mark
from gateway.uplink.outbox import Outbox

if TYPE_CHECKING:
    from gateway.contract.configmsg import ConfigStatus
    from gateway.contract.events import AlarmEventMessage
    from gateway.contract.incidents import IncidentChunk
    from gateway.contract.telemetry import TelemetryBatch
    from gateway.contract.topics import Message

FINAL_CONFIG_STATES = ("applied", "rejected", "rolled_back")

ALARM_MARK = "alarm_events"
"""Outbox mark: the last alarm event (journal seq) committed to the outbox."""


@dataclass(frozen=True, slots=True)
class Record:
    """An incident record's chunks, all of them (gateway.uplink.incidents)."""

    chunks: tuple[IncidentChunk, ...]


@dataclass(frozen=True, slots=True)
class Item:
    kind: MessageKind
    payload: list[Sample] | EncodedRows | Message | OutboundMessage | Report | Record
    produced: int


Report = EventReport | SnapshotReport
"""The alarm messages the uplink makes without a model (gateway.contract.alarm_reports)."""
_OWN = (StateReport, CatalogReport, EventReport, SnapshotReport)
"""What encodes itself; the rest (command results, config statuses, incident chunks, and
telemetry the encoder left) are the contract's models, made by whoever sent them: their
modules are loaded then, and imported here only when one comes (issue 15)."""


def _is(msg: object, module: str, name: str) -> bool:
    """`isinstance(msg, <module>.<name>)` without importing the module: none of its
    instances can exist before it is imported."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(msg, getattr(loaded, name))


def _chunk(msg: object) -> IncidentChunk | None:
    """`msg` if an incident chunk."""
    return cast("IncidentChunk", msg) if _is(msg, "gateway.contract.incidents",
                                             "IncidentChunk") else None


def _config_status(msg: object) -> ConfigStatus | None:
    """`msg` if a config status."""
    return cast("ConfigStatus", msg) if _is(msg, "gateway.contract.configmsg",
                                            "ConfigStatus") else None


def telemetry_items(encoder: TelemetryEncoder | None, samples: list[Sample], produced: int
                    ) -> list[Item]:
    """A poll's reported samples as telemetry items of at most MAX_BATCH_ROWS rows each,
    encoded by `encoder` where it can (else the samples, for the model path)."""
    out: list[Item] = []
    for start in range(0, len(samples), MAX_BATCH_ROWS):
        chunk = samples if len(samples) <= MAX_BATCH_ROWS else \
            samples[start:start + MAX_BATCH_ROWS]
        encoded = encoder.prepare(chunk, produced) if encoder is not None else None
        out.append(Item(MessageKind.TELEMETRY, chunk if encoded is None else encoded,
                        produced))
    return out


class ItemWriter:
    def __init__(self, outbox: Outbox, *, site: str, gateway: str, topics: dict[Channel, str],
                 catalog: str, numbered: bool, on_reject: Callable[[str], None]) -> None:
        """`numbered`: give telemetry and alarm events a delivery sequence (`ingest` mode)."""
        self.outbox = outbox
        self.site = site
        self.gateway = gateway
        self.topics = topics
        self.catalog = catalog
        self.numbered = numbered
        self._on_reject = on_reject
        try:
            self.encoder: TelemetryEncoder | None = TelemetryEncoder(
                site=site, gateway=gateway, catalog=catalog)
        except ContractError:  # every batch then goes through the model, which says why
            self.encoder = None
        """Shared with the event loop: it prepares (`telemetry_items`), this thread only adds
        envelopes (`payload`, which reads nothing the loop changes)."""

    def store(self, item: Item) -> None:
        """Encode `item` and put it in the outbox (its numbers taken now)."""
        if isinstance(item.payload, EncodedRows):
            self._store_encoded(item.payload, item.produced)
            return
        if isinstance(item.payload, list):
            samples = item.payload
            for start in range(0, len(samples), MAX_BATCH_ROWS):
                self._store_telemetry(samples[start:start + MAX_BATCH_ROWS], item.produced)
            return
        if isinstance(item.payload, Record):
            for chunk in item.payload.chunks:
                self._store_message(item, chunk)
            return
        self._store_message(item, item.payload)

    def _store_message(self, item: Item, msg: Message | OutboundMessage | Report) -> None:
        if _is(msg, "gateway.contract.events", "AlarmEventMessage"):  # the model: as a report
            msg = EventReport(**cast("AlarmEventMessage", msg).model_dump(exclude={"v"}))
        if isinstance(msg, _OWN):
            channel = msg.channel
        else:
            from gateway.contract.topics import channel_of
            channel = channel_of(msg)
        dseq = None
        if isinstance(msg, EventReport):
            if self.numbered:
                dseq = self.outbox.next_seq("delivery")
                msg = msg.numbered(self.outbox.stream, dseq)
            # committed together with the event
            self.outbox.set_mark(ALARM_MARK, max(msg.seq, self.outbox.mark(ALARM_MARK) or 0))
        # --- issue 12: incident chunks are numbered like alarm events, and the last one of a
        # record marks it handed over whole, in the same commit (gateway.uplink.incidents; the
        # budget may still drop the record later, whole and logged: gateway.uplink.budget)
        chunk = _chunk(msg)
        if chunk is not None:
            if self.numbered:
                dseq = self.outbox.next_seq("delivery")
                msg = chunk = chunk.model_copy(update={"stream": self.outbox.stream,
                                                       "dseq": dseq})
            if chunk.index == chunk.count - 1:
                self.outbox.set_mark(*incident_mark(chunk.id, chunk.sha256))
        # --- end issue 12 ---
        try:
            if isinstance(msg, _OWN):
                payload = msg.encode()
            else:
                from gateway.contract.codec import encode
                payload = encode(msg)
        except ContractError as exc:
            self._on_reject(f"{channel.value}: {exc}")
            return
        retained = CHANNELS[channel].retain
        # a config request's outcome is never superseded by another request's status (the
        # flasher waits for it): it replaces the progress before it, nothing replaces it
        status = _config_status(msg)
        final = status is not None and status.state in FINAL_CONFIG_STATES
        # the gateway's own state is a status report the next one replaces: never committed
        # (gateway.uplink.outbox_volatile); alarm snapshots and command results are
        volatile = isinstance(msg, StateReport) and msg.status == "online"
        self.outbox.put(item.kind, self.topics[channel], payload, qos=1, retain=retained,
                        replace=retained, created_ns=item.produced, dseq=dseq, final=final,
                        volatile=volatile)

    def _store_encoded(self, encoded: EncodedRows, produced: int) -> None:
        """The common case: rows encoded on the loop, no model built."""
        assert self.encoder is not None  # (only an encoder makes EncodedRows)
        seq = self.outbox.next_seq("telemetry")
        stream = dseq = None
        if self.numbered:
            dseq, stream = self.outbox.next_seq("delivery"), self.outbox.stream
        try:
            payload = self.encoder.payload(encoded, seq=seq, produced=produced, stream=stream,
                                           dseq=dseq)
        except ContractError as exc:  # (cannot happen: `prepare` leaves room for the envelope)
            self._on_reject(f"telemetry: {exc}")
            return
        self.outbox.put(MessageKind.TELEMETRY, self.topics[Channel.TELEMETRY], payload,
                        qos=1, retain=False, replace=False, created_ns=produced, dseq=dseq,
                        hold=True, seq=seq)

    def _store_telemetry(self, samples: list[Sample], produced: int) -> None:
        """What the encoder left: through the model, which names what is wrong (pydantic
        imported then)."""
        from gateway.contract.codec import encode
        from gateway.contract.telemetry import TelemetryBatch

        def build(rows: list[Sample], catalog: str | None) -> TelemetryBatch:
            return TelemetryBatch.from_samples(site=self.site, gateway=self.gateway, seq=0,
                                               produced=produced, samples=rows,
                                               catalog=catalog)
        try:
            batch = build(samples, self.catalog)
        except ContractError:  # find the offending samples, send the rest
            good = []
            for s in samples:
                try:
                    build([s], None)
                    good.append(s)
                except ContractError as exc:
                    self._on_reject(f"sample {s.point!r}: {exc}")
            if not good:
                return
            batch = build(good, self.catalog)
        # validated once: the real numbers are only copied in (≥ 1, as validated)
        update: dict[str, int] = {"seq": self.outbox.next_seq("telemetry")}
        dseq = None
        if self.numbered:
            dseq = update["dseq"] = self.outbox.next_seq("delivery")
            update["stream"] = self.outbox.stream
        batch = batch.model_copy(update=update)
        self.outbox.put(MessageKind.TELEMETRY, self.topics[Channel.TELEMETRY], encode(batch),
                        qos=1, retain=False, replace=False, created_ns=produced, dseq=dseq,
                        hold=True, seq=update["seq"])
