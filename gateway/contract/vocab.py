"""The wire contract's vocabulary without pydantic (issue 15): version, size limits, ids, the
string rules (`TextRule`) and number checks, message kinds and `ContractError` — what a running
gateway's uplink reads at rest. gateway.contract.base builds the strict pydantic types of the
models from these same rules (one definition: the ingest's models and the gateway's hand
checks share them)."""

from __future__ import annotations

import re
from enum import StrEnum

from gateway.records import dataclass

VERSION = 1
DEFAULT_ROOT = "roomwarden"
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024
"""Largest payload either side accepts (2 MiB; a full telemetry batch stays well below)."""
MAX_BATCH_ROWS = 4096
MAX_CATALOG_POINTS = 20_000
MAX_ACTIVE_ALARMS = 2000
MAX_CONFIG_BYTES = 512 * 1024
MAX_COMMAND_BYTES = 64 * 1024
"""Largest `cmd` payload a gateway looks at."""
MAX_COMMAND_LIFETIME_S = 15 * 60
"""Longest a command may be valid (`expires` − `ts`): bounds the gateway's replay memory."""
MAX_SHELVE_S = 7 * 24 * 3600
"""Longest shelve or suppression, from the panel or from `cmd` (7 days)."""

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ContractError(ValueError):
    """A topic or payload that breaks the contract; the message says why."""


# ---------------------------------------------------------------------------------- scalars

@dataclass(frozen=True, slots=True)
class TextRule:
    """A string scalar's rule, written once for both checkers: the strict type in
    gateway.contract.base is built from it (`StringConstraints`) and `check` applies it by
    hand — for what the gateway produces without building a model
    (gateway.contract.outbound, `TelemetryEncoder`).
    `check` refuses exactly what the strict type refuses for a `str` (too long or short, not
    the pattern, a lone surrogate) and anything that is not exactly a `str`."""

    max_length: int
    pattern: str | None = None
    """Matched in full (the type's `^…$`)."""
    min_length: int = 0

    @property
    def anchored(self) -> str | None:
        return None if self.pattern is None else f"^{self.pattern}$"

    def check(self, what: str, value: object) -> str:
        """`value`, or ContractError saying why the contract refuses it."""
        if type(value) is not str:
            raise ContractError(f"{what}: {type(value).__name__} is not a string")
        if not self.min_length <= len(value) <= self.max_length:
            raise ContractError(f"{what}: {len(value)} characters, not "
                                f"{self.min_length}-{self.max_length}")
        if self.pattern is not None:
            if _fullmatch(self.pattern, value) is None:
                raise ContractError(f"{what}: {value[:80]!r} is not {self.pattern}")
        elif not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ContractError(f"{what}: not encodable as UTF-8 (a lone surrogate)"
                                    ) from None
        return value


_fullmatch = re.fullmatch  # (re caches the few compiled patterns)


def check_int(what: str, value: object, low: int = 0, high: int | None = None) -> int:
    """`value` if exactly an `int` (not a bool) in [low, high), else ContractError (a strict
    int field with `ge=low, lt=high`)."""
    if type(value) is not int or value < low or (high is not None and value >= high):
        raise ContractError(f"{what}: {value!r:.40} is not an integer in "
                            f"[{low}, {'∞' if high is None else high})")
    return value


def check_float(what: str, value: object, low: float) -> float:
    """`value` as a float if a finite float or an int (strict float fields take both) not
    below `low`, else ContractError."""
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise ContractError(f"{what}: an integer beyond a float's range") from None
    if type(value) is not float or value - value != 0.0 or value < low:
        raise ContractError(f"{what}: {value!r:.40} is not a finite number >= {low}")
    return value


ID = TextRule(64, r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME = TextRule(64, r"[a-z][a-z0-9_]*")
POINT_ID = TextRule(160, ID.pattern)
HASH = TextRule(16, r"[0-9a-f]{16}")
SHA256 = TextRule(64, r"[0-9a-f]{64}")
SHORT = TextRule(64)
TEXT_VALUE = TextRule(200)
"""A sample's string value."""
NS_END = 2**63
"""Every `Ns` and `Seq` is below it."""
REQUEST_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
"""What `RequestId` accepts, for code that reads an id from a payload that broke the contract
(to answer it): one answer made with any other id would fail its own validation."""
class MessageKind(StrEnum):
    """What the outbox stores, in priority order for sending and reverse order for dropping."""

    ALARM = "alarm"
    STATE = "state"
    TELEMETRY = "telemetry"

    @property
    def priority(self) -> int:
        """0 is sent first and dropped last."""
        return _PRIORITY[self]


_PRIORITY = {MessageKind.ALARM: 0, MessageKind.STATE: 1, MessageKind.TELEMETRY: 2}
