"""On- and off-delays at run time (`Debounce`, re-exported by gateway.rules.conditions) and
the delays themselves, shared (`Delays`). Pure and clock-free: `step` takes the time."""

from __future__ import annotations

from gateway.rules.shared import Field, shared


class Delays:
    """A debounce's on- and off-delay — for a leaf, with what else every leaf of its plan has
    in common (gateway.rules.nodes) — one object for all that have equal ones
    (gateway.rules.shared), never changed once made."""

    __slots__ = ("__weakref__", "off_delay", "on_delay")

    def __init__(self, on_delay: float = 0.0, off_delay: float = 0.0) -> None:
        self.on_delay = on_delay
        self.off_delay = off_delay


class Debounce:
    """On-delay and off-delay over a raw condition that may be unknown (None).

    True must hold continuously for `on_delay` before the output becomes active; False must
    hold for `off_delay` before it clears. Unknown keeps the output and restarts both timers.
    The delays are in `shape`, shared (`Delays`); setting one gives the debounce its own
    (gateway.rules.shared.Field).
    """

    __slots__ = ("active", "off_since", "on_since", "shape")

    def __init__(self, on_delay: float = 0.0, off_delay: float = 0.0) -> None:
        self.shape = shared(Delays, on_delay, off_delay)
        self.active = False
        self.on_since: float | None = None
        self.off_since: float | None = None

    on_delay: Field[float] = Field()
    off_delay: Field[float] = Field()

    def step(self, raw: bool | None, now: float) -> bool:
        if raw is None:
            self.on_since = self.off_since = None
        elif raw:
            self.off_since = None
            if not self.active:
                if self.on_since is None:
                    self.on_since = now
                if now - self.on_since >= self.shape.on_delay:
                    self.active = True
                    self.on_since = None
        else:
            self.on_since = None
            if self.active:
                if self.off_since is None:
                    self.off_since = now
                if now - self.off_since >= self.shape.off_delay:
                    self.active = False
                    self.off_since = None
        return self.active
