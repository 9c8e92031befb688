"""Samples: one reading of one point, what acquisition produces, the uplink sends and the
ingest writes."""

from __future__ import annotations

from typing import NamedTuple

from gateway.contract.enums import Quality

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
