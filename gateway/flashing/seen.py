"""Replay protection of flashed configs: what `seen.json` remembers and what it refuses.

Replay: an envelope whose digest is remembered is refused (`replayed`: this very envelope was
seen before). A different envelope whose version is not above the highest accepted is a
`downgrade`, refused unless it is `force`d; one that carries the running config's version is
refused as a `downgrade` even when forced (no other config may take the running one's
number). A forced envelope passes the version check, so it is refused by its own memory
instead: its digest among the remembered forced ones, or a `ts` not after `forced_floor` (it is
older than a forced envelope already forgotten, so it was processed before or lost to a newer
one: sign it again). A captured `--force` envelope can therefore never be applied twice,
however many envelopes come in between.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypeGuard

from gateway.records import dataclass, field

if TYPE_CHECKING:  # the envelope model is pydantic: imported at the first config/set (issue 15)
    from gateway.contract.configmsg import ConfigSet

SEEN_DIGESTS = 1000
"""How many envelope digests `seen.json` keeps for replay detection (the version check
covers older ones)."""
SEEN_FORCED = 1000
"""How many forced envelopes `seen.json` remembers by digest (older ones: by `forced_floor`)."""
MAX_VERSION = 2**63 - 1
"""The largest config version (the contract's `ConfigVersion`)."""
MAX_VERSION_STEP = 10_000
"""How far above the highest accepted version an envelope may be numbered without `force`."""


def next_version_text(highest: int) -> str:
    """What to send after `highest`, for a refusal's message."""
    if highest >= MAX_VERSION:
        return ("no version is left above it (the largest is "
                f"{MAX_VERSION}): only a forced downgrade (--force --version N) is accepted")
    return f"send version {highest + 1}"


@dataclass
class Seen:
    """seen.json: the highest version accepted and the envelopes processed."""

    highest: int = 0
    digests: list[str] = field(default_factory=list)
    forced: list[tuple[str, int]] = field(default_factory=list)
    """(digest, ts) of the last SEEN_FORCED forced envelopes processed."""
    forced_floor: int = 0
    """The newest ts of a forced envelope dropped from `forced`."""

    def to_json(self) -> bytes:
        return json.dumps({"v": 1, "highest": self.highest, "digests": self.digests,
                           "forced": [list(f) for f in self.forced],
                           "forced_floor": self.forced_floor}).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Seen:
        """The memory `to_json` wrote; ValueError for anything else (a damaged file)."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        highest, digests = raw.get("highest"), raw.get("digests")
        forced, floor = raw.get("forced", []), raw.get("forced_floor", 0)
        if not (_is_int(highest) and _is_int(floor) and isinstance(digests, list)
                and isinstance(forced, list)):
            raise ValueError("bad types")
        pairs: list[tuple[str, int]] = []
        for entry in forced:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                    and _is_int(entry[1])):
                raise ValueError(f"bad forced entry {entry!r:.80}")
            pairs.append((entry[0], entry[1]))
        return cls(highest=highest, digests=[d for d in digests if isinstance(d, str)],
                   forced=pairs, forced_floor=floor)

    def check_fresh(self, envelope: ConfigSet, active_version: int) -> None:
        """EnvelopeRejected `replayed` if this envelope was processed before (for a forced
        one, also: signed before a forced envelope already forgotten), `downgrade` if its
        version is not above the highest ever accepted (allowed with `force`, except the
        active config's own version), `version_jump` if it is more than MAX_VERSION_STEP
        above it (allowed with `force`). A forced envelope is also checked against the forced
        ones remembered (see the module docstring)."""
        # an envelope's module, imported with the envelope (the config store, which reads
        # this file at every start, needs neither: issue 15)
        from gateway.flashing.envelope import (
            DOWNGRADE,
            REPLAYED,
            VERSION_JUMP,
            EnvelopeRejected,
            envelope_digest,
        )

        digest = envelope_digest(envelope)
        if digest in self.digests or (envelope.force
                                      and any(d == digest for d, _ts in self.forced)):
            raise EnvelopeRejected(REPLAYED, f"envelope {envelope.id} (version "
                                             f"{envelope.version}) was already processed")
        if envelope.force and envelope.ts <= self.forced_floor:
            raise EnvelopeRejected(REPLAYED, f"forced envelope {envelope.id} is older than a "
                                             "forced envelope already processed; sign it again")
        highest = max(self.highest, active_version)
        if envelope.version == active_version:
            # another config under the running one's number (the same envelope is `replayed`
            # above): refused even with force
            raise EnvelopeRejected(DOWNGRADE, f"version {envelope.version} is not above the "
                                              f"highest accepted ({highest}): it is the "
                                              "running config's version, which no other config "
                                              "may reuse, even with --force; "
                                              + next_version_text(highest))
        if envelope.version <= highest and not envelope.force:
            raise EnvelopeRejected(DOWNGRADE, f"version {envelope.version} is not above the "
                                              f"highest accepted ({highest}); a downgrade "
                                              "needs --force"
                                   + ("" if highest < MAX_VERSION
                                      else f"; {next_version_text(highest)}"))
        if envelope.version > highest + MAX_VERSION_STEP and not envelope.force:
            raise EnvelopeRejected(VERSION_JUMP, f"version {envelope.version} is more than "
                                                 f"{MAX_VERSION_STEP} above the highest "
                                                 f"accepted ({highest}): it would use up "
                                                 "versions for nothing (a forged or damaged "
                                                 "config/status?); send version "
                                                 f"{highest + 1}, or sign it with --force "
                                                 "to jump on purpose")

    def remember(self, envelope: ConfigSet, *, accepted: bool) -> None:
        """Record an envelope as processed (its digest; if `accepted`, its version as the
        highest accepted)."""
        from gateway.flashing.envelope import envelope_digest

        digest = envelope_digest(envelope)
        if digest not in self.digests:
            self.digests.append(digest)
        self.digests = self.digests[-SEEN_DIGESTS:]
        if envelope.force and all(d != digest for d, _ts in self.forced):
            self.forced.append((digest, envelope.ts))
            self.forced.sort(key=lambda f: f[1])
            while len(self.forced) > SEEN_FORCED:
                self.forced_floor = max(self.forced_floor, self.forced.pop(0)[1])
        if accepted:
            self.highest = max(self.highest, envelope.version)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
