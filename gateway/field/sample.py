"""Samples: what acquisition produces and everything downstream consumes (defined in the
wire contract's leaf package, `gateway.contract`, which the central ingest shares)."""

from __future__ import annotations

from gateway.contract.enums import Quality
from gateway.contract.sample import Sample, Value

__all__ = ["Quality", "Sample", "Value"]
