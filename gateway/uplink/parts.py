"""The uplink's parts built from its settings (gateway.uplink.publisher wires them)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gateway.clock import Clock
from gateway.contract.points import PointTagged
from gateway.uplink.delivery import DeliveryTracker
from gateway.uplink.exception_filter import ExceptionFilter, ExceptionPolicy
from gateway.uplink.outbox import Outbox
from gateway.uplink.replay import ReplayPacer
from gateway.uplink.settings import UplinkSettings


def outbox_of(settings: UplinkSettings, state_dir: Path, clock: Clock) -> Outbox:
    """The durable outbox (`outbox.path` relative to the state directory unless absolute)."""
    path = Path(settings.outbox.path)
    return Outbox(state_dir / path if not path.is_absolute() else path, clock=clock,
                  budget_bytes=int(settings.outbox.budget_mb * 1024 * 1024),
                  commit_interval=settings.outbox.commit_interval,
                  hold=settings.outbox.telemetry_hold,
                  delete_wait=settings.outbox.delete_wait)


def filter_of(settings: UplinkSettings, clock: Clock,
              points: Mapping[str, PointTagged]) -> ExceptionFilter:
    """Report by exception, with the deadbands by quantity and by point; a point's quantity
    looked up in `points` (the catalog's own: no copy of it) the first time it is seen."""
    exc = settings.exception

    def quantity_of(point: str) -> str | None:
        meta = points.get(point)
        return None if meta is None else meta.quantity

    return ExceptionFilter(
        ExceptionPolicy(deadband=exc.deadband, max_interval=exc.max_interval,
                        deadband_by_quantity=dict(exc.deadbands),
                        deadband_by_point=dict(exc.point_deadbands)),
        clock, quantity_of)


def pacer_of(settings: UplinkSettings, clock: Clock) -> ReplayPacer:
    return ReplayPacer(clock, messages_per_s=settings.replay.messages_per_s,
                       bytes_per_s=settings.replay.bytes_per_s)


def tracker_of(settings: UplinkSettings, clock: Clock) -> DeliveryTracker:
    return DeliveryTracker(clock, mode=settings.delivery, ack_timeout=settings.ack_timeout)
