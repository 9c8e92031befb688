"""The uplink's parts built from its settings (gateway.uplink.publisher wires them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gateway.clock import Clock
from gateway.config.state_files import owner_of
from gateway.contract.points import PointTagged
from gateway.uplink.delivery import DeliveryTracker
from gateway.uplink.exception_filter import ExceptionFilter, ExceptionPolicy
from gateway.uplink.outbox import Outbox, OutboxError
from gateway.uplink.replay import ReplayPacer
from gateway.uplink.settings import UplinkSettings


def outbox_of(settings: UplinkSettings, state_dir: Path, clock: Clock) -> Outbox:
    """The durable outbox (`outbox.path` relative to the state directory unless absolute)."""
    path = outbox_path(settings.outbox.path, state_dir)
    return Outbox(path, clock=clock,
                  budget_bytes=int(settings.outbox.budget_mb * 1024 * 1024),
                  commit_interval=settings.outbox.commit_interval,
                  hold=settings.outbox.telemetry_hold,
                  delete_wait=settings.outbox.delete_wait)


def outbox_path(setting: str, state_dir: Path) -> Path:
    """`outbox.path` resolved as the outbox opens it. OutboxError if it lands on the gateway's
    own other state in `state_dir` (gateway.config.state_files): the check judges a relative
    path, but only here is it known where an absolute one (or one through `..` or a symlink)
    ends up. Raised while the uplink is built, it stops the config: an apply rolls back to
    the config that ran (gateway.flashing.apply), a start boots the kept copy
    (gateway.booting)."""
    path = state_dir / setting  # (an absolute `setting` is itself)
    real, real_state = os.path.realpath(path), os.path.realpath(state_dir)
    inside = os.path.commonpath([real, real_state]) == real_state
    owner = owner_of(os.path.relpath(real, real_state)) if inside else None
    if owner is not None:
        raise OutboxError(f"uplink.outbox.path {setting!r} is {owner} in the gateway's "
                          f"state directory {state_dir} ({real}): refusing to put the outbox "
                          "on the gateway's own state (default uplink/outbox.sqlite)")
    return path


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
