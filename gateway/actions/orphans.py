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

A release as the gateway writes it is read without pydantic (`_plain`: plain JSON checks,
gateway.plain_json, that say yes only where the model would give the same values); any other
is read by the model it always was (gateway.actions.orphan_models, imported then), so a broken
or hostile value is refused with the model's own words (issue 15; tests/actions/
test_orphans_plain.py: hypothesis against the model kept verbatim there).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, get_args

from gateway.config.duration_parse import parse_duration
from gateway.config.names import Id
from gateway.config.outputs import Output, OutputRole, WriteBackoff
from gateway.config.section import model_message, unvalidated
from gateway.plain_json import INT64, is_float, is_int, is_text, matches
from gateway.records import dataclass

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
        read = _read(item)
        if isinstance(read, str):
            problems.append(f"{what}: {read}: refused")
            continue
        if read.driven.coil in coils:
            problems.append(f"{what}: its coil is listed before: refused")
            continue
        coils.add(read.driven.coil)
        orphans.append(read)
    return orphans, problems


def _read(item: object) -> Orphan | str:
    """One release, or why its model refuses it (where, the first reason, how many)."""
    orphan = _plain(item)
    if orphan is not None:
        return orphan
    from pydantic import ValidationError

    from gateway.actions.orphan_models import _Saved

    try:
        saved = _Saved.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the release"
        reason = model_message(first)  # a section's words as a model's (Output)
        return f"{where}: {reason} ({exc.error_count()} errors)"
    return Orphan(Driven(saved.output, Coil(saved.line, saved.unit, saved.address), saved.bus,
                         saved.rooms), saved.version, saved.tries, saved.error)


def _pattern(annotated: object) -> tuple[re.Pattern[str], int]:
    """A name type's pattern (without its `^…$`) and length (gateway.config.names)."""
    limits = annotated.__metadata__[0]  # type: ignore[attr-defined]
    return re.compile(limits.pattern.removeprefix("^").removesuffix("$")), limits.max_length


_ID = _pattern(Id)
_NAME = _pattern(Output.__annotations__["point"])
_ROLES = frozenset(get_args(OutputRole))
_KEYS = frozenset({"output", "bus", "line", "unit", "address", "rooms", "version", "tries",
                   "error"})
_OUTPUT_KEYS = frozenset({"id", "role", "device", "point", "rooms", "on_value", "verify",
                          "backoff"})
_BACKOFF_KEYS = frozenset({"initial", "multiplier", "max"})


def _plain(item: object) -> Orphan | None:
    """The release `item` as the model reads it, where it is as `_record` writes it and
    the model would take it unchanged; else None (the model decides)."""
    if not (type(item) is dict and item.keys() == _KEYS and matches(item["bus"], *_ID)
            and is_int(item["unit"], 0, 255) and is_int(item["address"], 0, 65535)
            and _ids(item["rooms"], 64) and is_int(item["version"], 0, INT64 - 1)
            and is_int(item["tries"], 0, 1_000_000)
            and (item["error"] is None or is_text(item["error"], 0, MAX_ERROR))):
        return None
    line, output = item["line"], _output(item["output"])
    if output is None or type(line) is not list or not (
            (len(line) == 2 and line[0] == "rtu" and is_text(line[1], 1, 4096))
            or (len(line) == 3 and line[0] == "tcp" and is_text(line[1], 1, 253)
            and is_int(line[2], 1, 65535))):
        return None
    coil = Coil(tuple(line), item["unit"], item["address"])
    return Orphan(Driven(output, coil, item["bus"], tuple(item["rooms"])), item["version"],
                  item["tries"], item["error"])


def _ids(value: object, most: int | None = None) -> bool:
    return type(value) is list and (most is None or len(value) <= most) and all(
        matches(each, *_ID) for each in value)


def _output(found: object) -> Output | None:
    """The `Output` of a release, as `_plain` reads it (None: the model decides)."""
    if not (type(found) is dict and found.keys() == _OUTPUT_KEYS
            and matches(found["id"], *_ID) and type(found["role"]) is str
            and found["role"] in _ROLES and matches(found["device"], *_ID)
            and matches(found["point"], *_NAME) and _ids(found["rooms"])
            and type(found["on_value"]) is bool and type(found["verify"]) is bool):
        return None
    backoff = found["backoff"]
    if not (type(backoff) is dict and backoff.keys() == _BACKOFF_KEYS
            and is_float(backoff["multiplier"]) and 1.0 <= backoff["multiplier"] <= 10.0):
        return None
    initial, longest = _duration(backoff["initial"]), _duration(backoff["max"])
    if initial is None or longest is None:
        return None
    return unvalidated(Output, id=found["id"], role=found["role"], device=found["device"],
                       point=found["point"], rooms=tuple(found["rooms"]),
                       on_value=found["on_value"], verify=found["verify"],
                       backoff=unvalidated(WriteBackoff, initial=initial,
                                           multiplier=backoff["multiplier"], max=longest))


def _duration(value: object) -> float | None:
    """A duration the model takes: a number of seconds within its bounds (None: not one)."""
    if not (is_float(value) or is_int(value)):
        return None
    try:
        return parse_duration(value)
    except ValueError:
        return None


def _named(index: int, item: object) -> str:
    """How the log names a release it may not be able to read: its index, and its output's
    id when there is one."""
    output = item.get("output") if isinstance(item, dict) else None
    name = output.get("id") if isinstance(output, dict) else None
    return f"release {index}" + (f" (output {name[:64]!r})" if isinstance(name, str) else "")


def output_ids(text: str | None) -> frozenset[str]:
    """The outputs whose releases the journal's value holds (what `decode` restores)."""
    return frozenset(orphan.driven.output.id for orphan in decode(text)[0])
