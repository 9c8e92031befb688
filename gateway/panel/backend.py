"""What the panel needs from the daemon: a snapshot to show and commands to pass on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.alarms.events import CommandRefused

if TYPE_CHECKING:  # the panel's models: imported at its first request (issue 15)
    from gateway.panel.views import Acknowledged, AlarmRef, PanelState

__all__ = ["CommandRefused", "PanelBackend"]


class PanelBackend(Protocol):
    def panel_state(self) -> PanelState: ...

    def acknowledge(self, alarms: list[AlarmRef], actor: str, note: str | None) -> int:
        """Acknowledge; returns how many alarms changed state. Raises CommandRefused."""
        ...

    def acknowledge_waiting(self, alarms: list[AlarmRef], actor: str,
                            note: str | None) -> Acknowledged:
        """Acknowledge those that still wait; the others are `skipped` (not refused)."""
        ...

    def reset_alarm(self, alarm: AlarmRef, actor: str, note: str | None) -> int:
        """Reset a latched alarm whose condition has cleared; 0: normal already. Raises
        CommandRefused."""
        ...

    def shelve(self, alarm: AlarmRef, actor: str, minutes: float, reason: str) -> None: ...

    def unshelve(self, alarm: AlarmRef, actor: str) -> None: ...

    def suppress(self, scope: str, actor: str, minutes: float, reason: str) -> None: ...

    def unsuppress(self, scope: str, actor: str) -> None: ...

    def reset_output(self, output: str, actor: str, note: str | None) -> str:
        """Release an output held until an operator reset; returns what became of it (it may
        stay on for an alarm that still demands it). Raises CommandRefused."""
        ...
