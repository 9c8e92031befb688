"""Samples: what acquisition produces and everything downstream consumes."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Quality(StrEnum):
    GOOD = "good"
    STALE = "stale"  # no fresh reading within the expected interval
    COMM_ERROR = "comm_error"  # timeout, CRC error, exception reply, garbage, port gone
    INVALID = "invalid"  # a reply arrived but the value is outside its valid range or undecodable


Value = float | int | bool | str | None


class Sample(NamedTuple):
    """One reading of one point. `point` is `device_id.point_name`; `ts` is ns since the epoch
    (UTC) when the reply arrived; `value` is the engineering value, or None when there is none."""

    point: str
    value: Value
    ts: int
    quality: Quality

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD
