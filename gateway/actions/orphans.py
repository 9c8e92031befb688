"""The coils a config apply leaves behind (`Orphan`: gateway.actions.release switches them off),
and how the alarm journal keeps those not yet confirmed off across a restart.

Why the journal: a pending release is safety state of the same kind as an output held until an
operator reset — a relay that may be energised with nothing else to switch it off — and those
are kept in the journal's meta table (`output_holds`), committed with synchronous=FULL, so
neither a restart nor a power cut forgets one. The releases are one more meta key
(`coil_releases`, `AlarmLedger.keep`), JSON as the others are; the journal's own recovery
(a broken file moved aside, the state rewritten into a fresh one) keeps it too.

The value (`encode`)::

    {"version": 1, "releases": [{"output": {id, role, device, point, rooms, on_value,
      verify, backoff}, "bus": old bus id, "line": ["rtu", port] | ["tcp", host, port],
      "unit": …, "address": …, "rooms": […], "version": the config that released it,
      "tries": failed tries, "error": the last one's reason or null}, …]}

The output is kept as the config's own `Output` model (only what a release uses), validated
by it when read back. Bounds: `MAX_PENDING` releases (more are logged and not kept), `MAX_TEXT`
characters read. `decode` refuses a value that is not of this format whole, and each release
that does not validate (or is one too many, or a coil already listed) on its own, with the
reason; it never raises — a start goes on with what it could read.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from gateway.config.outputs import Output
from gateway.config.profile import Id
from gateway.config.section import model_message
from gateway.strict import StrictModel

FORMAT = 1
MAX_PENDING = 256
"""Releases kept at most (a site has tens of outputs; an apply releases those it drops)."""
MAX_TEXT = 256 * 1024
"""Characters of the journal's value read at most (256 releases take about 100 KB)."""
MAX_ERROR = 200
"""Characters of a failed try's reason kept."""


@dataclass(frozen=True, slots=True)
class Coil:
    """A coil as the field sees it, whatever the configs call it."""

    line: tuple[object, ...]
    """The physical line: ("rtu", port) or ("tcp", host, port)."""
    unit: int
    address: int


@dataclass(frozen=True, slots=True)
class Driven:
    """An output of a config and the coil it drives."""

    output: Output
    coil: Coil
    bus: str
    rooms: tuple[str, ...] = ()
    """The rooms it served in that config (its alarm's room)."""


@dataclass(eq=False)
class Orphan:
    """A coil to switch off, and how the tries went."""

    driven: Driven
    version: int
    """The config that released it."""
    tries: int = 0
    """Failed tries in a row."""
    error: str | None = None
    """Why it is not confirmed off: the last failed try, or no bus reaching its line. Set,
    the output's `actions.output_failure` alarm is up (gateway.actions.failures)."""
    retry: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        output = self.driven.output
        return f"{output.device}.{output.point}"


class _Saved(StrictModel):
    """One release as the journal keeps it (see the module docstring)."""

    output: Output
    bus: Id
    line: (tuple[Literal["rtu"], Annotated[str, Field(min_length=1, max_length=4096)]]
           | tuple[Literal["tcp"], Annotated[str, Field(min_length=1, max_length=253)],
                   Annotated[int, Field(ge=1, le=65535)]])
    unit: Annotated[int, Field(ge=0, le=255)]
    address: Annotated[int, Field(ge=0, le=65535)]
    rooms: Annotated[tuple[Id, ...], Field(max_length=64)] = ()
    version: Annotated[int, Field(ge=0)]
    tries: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    error: Annotated[str, Field(max_length=MAX_ERROR)] | None = None


def encode(orphans: list[Orphan]) -> str:
    """The journal's value for these releases (the first `MAX_PENDING`)."""
    return json.dumps({"version": FORMAT, "releases": [
        _record(orphan) for orphan in orphans[:MAX_PENDING]]}, separators=(",", ":"))


def _record(orphan: Orphan) -> dict[str, Any]:
    driven, output = orphan.driven, orphan.driven.output
    backoff = output.backoff
    return {"output": {"id": output.id, "role": output.role, "device": output.device,
                       "point": output.point, "rooms": list(output.rooms),
                       "on_value": output.on_value, "verify": output.verify,
                       "backoff": {"initial": backoff.initial,
                                   "multiplier": backoff.multiplier, "max": backoff.max}},
            "bus": driven.bus, "line": list(driven.coil.line), "unit": driven.coil.unit,
            "address": driven.coil.address, "rooms": list(driven.rooms),
            "version": orphan.version, "tries": orphan.tries,
            "error": None if orphan.error is None else orphan.error[:MAX_ERROR]}


def decode(text: str | None) -> tuple[list[Orphan], list[str]]:
    """The releases the journal's value holds, and what was refused in it and why (one line
    each, for the log). Never raises."""
    if not text:
        return [], []
    if len(text) > MAX_TEXT:
        return [], [f"the value is {len(text)} characters, more than {MAX_TEXT}: refused "
                    "whole"]
    try:
        found = json.loads(text)
    except ValueError as exc:
        return [], [f"not JSON ({exc}): refused whole"]
    if not isinstance(found, dict) or found.get("version") != FORMAT \
            or not isinstance(found.get("releases"), list):
        return [], [f"not a list of releases of format {FORMAT}: refused whole"]
    orphans: list[Orphan] = []
    problems: list[str] = []
    coils: set[Coil] = set()
    for index, item in enumerate(found["releases"]):
        what = _named(index, item)
        if len(orphans) >= MAX_PENDING:
            problems.append(f"{len(found['releases']) - index} releases past the first "
                            f"{MAX_PENDING} (from {what} on): refused")
            break
        try:
            saved = _Saved.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the release"
            reason = model_message(first)  # a section's words as a model's (Output)
            problems.append(f"{what}: {where}: {reason} ({exc.error_count()} errors): "
                            "refused")
            continue
        coil = Coil(saved.line, saved.unit, saved.address)
        if coil in coils:
            problems.append(f"{what}: its coil is listed before: refused")
            continue
        coils.add(coil)
        driven = Driven(saved.output, coil, saved.bus, saved.rooms)
        orphans.append(Orphan(driven, saved.version, saved.tries, saved.error))
    return orphans, problems


def _named(index: int, item: object) -> str:
    """How the log names a release it may not be able to read: its index, and its output's
    id when there is one."""
    output = item.get("output") if isinstance(item, dict) else None
    name = output.get("id") if isinstance(output, dict) else None
    return f"release {index}" + (f" (output {name[:64]!r})" if isinstance(name, str) else "")


def output_ids(text: str | None) -> frozenset[str]:
    """The outputs whose releases the journal's value holds (what `decode` restores)."""
    return frozenset(orphan.driven.output.id for orphan in decode(text)[0])
