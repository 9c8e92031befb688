"""The pydantic model of one release as the journal keeps it (gateway.actions.orphans), as it
was: what `orphans.decode` reads a release it cannot vouch for with, so that such a release
is refused with this model's own error. A gateway reading what it wrote never imports this
module (issue 15)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.config.outputs import Output
from gateway.config.profile import Id
from gateway.strict import StrictModel

MAX_ERROR = 200
"""Characters of a failed try's reason kept: gateway.actions.orphans's `MAX_ERROR` (not imported
from there: that module imports this one; tests/actions/test_orphans_plain.py's edge values
200 and 201 hold the two together)."""


class _Saved(StrictModel):  # its name is in its errors ("instance of _Saved")
    """One release as the journal keeps it (see gateway.actions.orphans)."""

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
