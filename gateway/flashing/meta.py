"""The config store's records: where a config came from (`ConfigMeta`, its meta.json), which
config the gateway boots (`BootChoice`) and the store's single authority (`state.json`).
gateway.flashing.store reads and writes them.
"""

from __future__ import annotations

import errno
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gateway.records import dataclass

if TYPE_CHECKING:  # the envelope model is pydantic: imported at the first config/set (issue 15)
    from gateway.contract.configmsg import ConfigSet

Source = Literal["factory", "flash", "local"]


class StoreError(RuntimeError):
    """The store cannot do what was asked (nothing staged, unreadable directory …)."""


@dataclass(frozen=True)
class ConfigMeta:
    """Where a config came from: kept next to it as meta.json."""

    version: int
    sha256: str
    source: Source
    author: str | None = None
    key_id: str | None = None
    request_id: str | None = None
    applied_ns: int | None = None
    """When it was committed as last-known-good (None while staged, and for the factory)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> ConfigMeta:
        """What `to_json` wrote; ValueError for anything else (a damaged file)."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("meta.json is not an object")
        try:
            meta = cls(**raw)
        except TypeError as exc:
            raise ValueError(f"meta.json: {exc}") from None
        if not isinstance(meta.version, int) or isinstance(meta.version, bool) \
                or meta.version < 0:
            raise ValueError("meta.json: bad version")
        if not isinstance(meta.sha256, str) or len(meta.sha256) != 64:
            raise ValueError("meta.json: bad sha256")
        if meta.source not in ("factory", "flash", "local"):
            raise ValueError("meta.json: bad source")
        if any(v is not None and not isinstance(v, str)
               for v in (meta.author, meta.key_id, meta.request_id)):
            raise ValueError("meta.json: author, key_id and request_id are text or null")
        if meta.applied_ns is not None and (not isinstance(meta.applied_ns, int)
                                            or isinstance(meta.applied_ns, bool)):
            raise ValueError("meta.json: bad applied_ns")
        return meta

    @classmethod
    def of_envelope(cls, envelope: ConfigSet) -> ConfigMeta:
        return cls(version=envelope.version, sha256=envelope.sha256, source="flash",
                   author=envelope.author, key_id=envelope.key_id, request_id=envelope.id)


@dataclass(frozen=True)
class BootChoice:
    """Which config the gateway starts with."""

    text: str
    path: Path
    """The file holding `text` (a generation's config.yaml, or the factory file)."""
    meta: ConfigMeta
    recovered: bool = False
    """The process died while applying `interrupted`: it was dropped, the LKG runs."""
    interrupted: ConfigMeta | None = None
    problems: tuple[str, ...] = ()
    """Damage found and worked around (a generation whose files do not match its hash)."""


@dataclass
class StoreState:
    """state.json: the generations in use and whether one is being applied."""

    active: str | None = None
    previous: str | None = None
    staged: str | None = None
    applying: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"v": 1, "active": self.active, "previous": self.previous,
                           "staged": self.staged, "applying": self.applying},
                          indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> StoreState:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("v") != 1:
            raise ValueError("state.json is not a version-1 state")
        out = cls(active=raw.get("active"), previous=raw.get("previous"),
                  staged=raw.get("staged"), applying=bool(raw.get("applying")))
        for name in (out.active, out.previous, out.staged):
            if name is not None and (not isinstance(name, str) or "/" in name
                                     or name.startswith(".")):
                raise ValueError(f"state.json names a bad generation {name!r}")
        return out


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def storage_problem(exc: BaseException) -> str:
    """What a failed write to the state directory means, for people (and the log)."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    code = cause.errno if isinstance(cause, OSError) else None
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"state directory full: {exc}"
    if code == errno.EROFS:
        return f"state directory read-only: {exc}"
    return f"the state directory failed: {exc}"
