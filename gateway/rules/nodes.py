"""The condition nodes at run time: leaves over `PointState`s and signals, and combinators.
Pure and clock-free like `gateway.rules.conditions`, whose building blocks they use.

* leaves: `CompareLeaf` (a signal through a hysteresis test and delays), `EqualsLeaf`
  (contacts, flags, enum codes), `StaleLeaf`, `FlatLeaf`, `InvalidLeaf` (sensor health);
* combinators: `AllNode`, `AnyNode`, `AtLeastNode` (coincidence, voting).

A node's `eval(now)` returns whether it is active (delays and hysteresis included) and leaves
the deciding value in `node.value`.

Unknown is not false (DESIGN principle 7: only good data past the limit less the deadband
returns an alarm). A leaf's raw result is True, False or None = *unknown*, and `Debounce`
turns it into the held output: unknown keeps the output as it was (active stays active,
normal stays normal), cancels a pending on-delay and restarts a running off-delay. So
unknown never activates anything and never returns anything; combinators (`AllNode`,
`AnyNode`, `AtLeastNode`, and so coincidence and voting) work on their children's held
outputs, so a detector whose reading is missing keeps counting as it last did. What is
unknown, per leaf:

* `CompareLeaf`: no value (bad quality, missing, a rate window not yet long enough), a
  value that is not past the limit while some member of the group has no good value (the
  missing member might be the one past it), or a rate whose uncertainty interval straddles
  the limit (`gateway.rules.rate`: past the limit only when the whole interval is, "not
  exceeded" only when the whole interval is below). One exception, fail-safe as gas and
  current monitors treat over-range: a reading beyond its point's valid range (quality
  invalid, a finite number: `PointState.beyond`) that is past an "above" limit on its side —
  over the valid maximum and above the limit, or under the minimum and below a "below"
  limit — is True, judged as a good reading would be (hysteresis, on- and off-delays run as
  for it). Otherwise it stays unknown: never False, never past a limit on the other side,
  and NaN, an infinity or text never count. Signals: a point's own value, a group's worst
  value, and the monotone group signals (mean, load); a rate, spread, unbalance, dew point
  or difference takes good samples only;
* `EqualsLeaf`: no good member, or no good member matching while some member is bad;
* `StaleLeaf`: never unknown once it can judge: "no good sample for max_age" is itself the
  finding on missing data, so sensor-health rules fire on missing data. Only before the
  point's first good sample and within max_age of the engine's start is it unknown (an alarm
  restored at a restart stays until a good sample arrives);
* `InvalidLeaf`: active after `duration` of invalid samples; False only on a good sample;
  anything else (invalid for a shorter time, comm errors, no sample) is unknown;
* `FlatLeaf`: active once the values stayed within epsilon for the window; False only after
  the values were seen to move; unknown while the point is bad or the history is shorter.

Evaluation state survives a config apply and a restart: `gateway.rules.carry` copies it from
the previous engine's nodes, or holds a node active for an alarm the journal restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.field.sample import Value
from gateway.rules.combinators import AllNode as AllNode
from gateway.rules.combinators import AnyNode as AnyNode
from gateway.rules.combinators import AtLeastNode as AtLeastNode
from gateway.rules.conditions import GOOD as GOOD
from gateway.rules.conditions import (
    NUMBER,
    Debounce,
    Delays,
    GroupSignal,
    PointState,
    Signal,
    Test,
    ValueSignal,
    flat_epsilon,
    track,
)
from gateway.rules.rate import RateSignal, rising
from gateway.rules.shared import Field, shared


class Node(Protocol):
    value: Value

    def eval(self, now: float) -> bool: ...


class _Leaf(Debounce):
    """A leaf is its own `Debounce` (its held output and timers are its own slots: no object
    per leaf for them; 40 bytes less a leaf, and a site has thousands). Its `shape` holds its
    delays with what else every leaf of its plan has in common (its test, limits, lengths),
    shared (gateway.rules.shared): a field each took 8 bytes a leaf."""

    __slots__ = ()

    def _take(self, debounce: Debounce) -> None:
        """`debounce`'s state as this leaf's own."""
        self.active, self.on_since, self.off_since = (debounce.active, debounce.on_since,
                                                      debounce.off_since)

    def _start(self, shape: Delays) -> None:
        """Normal, no timer running, with this shape."""
        self.shape = shape
        self.active = False
        self.on_since = self.off_since = None

    @property
    def debounce(self) -> Debounce:
        """The leaf's debounce: the leaf itself."""
        return self


class CompareLeaf(_Leaf):
    """A numeric signal through a hysteresis test and on/off delays.

    The deadband holds an alarm that is active, not one still waiting out its on-delay: the
    test's latch is the debounced result (the leaf's `active`), so a value that falls back below
    the limit during the on-delay restarts it. `members`: the points of a group signal; while
    one of them has no good value, "not past the limit" is unknown, not False. A rate signal
    is judged two-sided: see `gateway.rules.rate`. The commonest leaf, one point's own value
    (signal `value`, one member: `point`), reads it inline — the same result as the signal's
    `read`."""

    __slots__ = ("_signal", "members", "point", "value")
    shape: _CompareShape

    def __init__(self, signal: Signal, test: Test, debounce: Debounce,
                 members: Sequence[PointState] = ()) -> None:
        self.point = signal.single if type(signal) is ValueSignal else None
        self._signal = None if self.point is not None else signal
        """None for one point's own value (`signal` makes it when asked: no object per
        leaf that eval never reads)."""
        self.shape = shared(_CompareShape, debounce.on_delay, debounce.off_delay, test,
                            isinstance(signal, ValueSignal) or (
                                isinstance(signal, GroupSignal) and signal.monotone))
        self._take(debounce)
        self.members = tuple(members) if len(members) > 1 else ()
        self.value: Value = None

    test: Field[Test] = Field()
    saturable: Field[bool] = Field()

    @property
    def side(self) -> tuple[float, float] | None:
        return self.shape.side

    @side.setter
    def side(self, side: tuple[float, float]) -> None:
        self.shape.side = side  # the test's: the same for all the shape's leaves

    @property
    def signal(self) -> Signal:
        """The signal the leaf judges (for one point's own value, a `ValueSignal` of it made
        now: its key is not read for one member)."""
        signal = self._signal
        return ValueSignal((self.point,), rising) if signal is None else signal  # type: ignore[arg-type]

    def eval(self, now: float) -> bool:
        point = self.point
        shape = self.shape
        if point is not None:  # one point's value: ValueSignal.read inline, no rate, no group
            number = point.value
            if not point.good or not isinstance(number, NUMBER):
                side = point.beyond()
                if side:  # over- or under-range: past a limit on its side counts
                    reading = float(number)  # type: ignore[arg-type]  # beyond: a number
                    if shape.test.past(reading, side, self.active):
                        self.value = reading
                        return self.step(True, now)
                return self.step(None, now)
            self.value = number = float(number)
            return self.step(shape.test.judge(number, self.active), now)
        signal = self._signal
        value = signal.read(now)  # type: ignore[union-attr]  # not one point's value
        test = shape.test
        latched = self.active
        raw: bool | None = None
        if value is not None:
            self.value = value
            raw = test.judge(value, latched)
        if not raw and not latched and self.on_since is None and self.off_since is None \
                and not shape.saturable:  # normal, no timer: not past the limit, known or
            return False  # unknown, keeps it so (what `step` would do: nothing)
        if value is not None and not raw:
            if isinstance(signal, RateSignal) and signal.ceiling is not None and \
                    test.judge(signal.ceiling, latched):
                # the rate's two-sided noise guard: its calm end is not past the limit,
                # but while the other end is, "not exceeded" is not yet known
                raw = None
            if not raw and self.members and not all(map(GOOD, self.members)):
                raw = None
        if not raw and shape.saturable:  # a member's reading beyond its valid range
            saturable: ValueSignal | GroupSignal = self._signal  # type: ignore[assignment]
            for side in (1, -1):
                found = saturable.read_beyond(side)
                if found is not None and test.past(found, side, latched):
                    self.value = found
                    return self.step(True, now)
        return self.step(raw, now)


class EqualsLeaf(_Leaf):
    """Any good member's value is one of its accepted values (contacts, flags, enum codes)."""

    __slots__ = ("accepted", "members", "value")

    def __init__(self, members: Sequence[PointState], accepted: Sequence[frozenset[object]],
                 debounce: Debounce) -> None:
        self.members = tuple(members)
        self.accepted = tuple(accepted)
        self.shape = debounce.shape
        self._take(debounce)
        self.value: Value = None

    def eval(self, now: float) -> bool:
        raw: bool | None = None
        unknown = False
        for member, accepted in zip(self.members, self.accepted, strict=True):
            if not member.good:
                unknown = True
                continue
            value = member.value
            if _matches(value, accepted):
                raw = True
                self.value = value
                break
            if raw is None:
                raw = False
                self.value = value
        if raw is False and unknown:
            raw = None  # the bad member may be the one that matches
        return self.step(raw, now)


def _matches(value: Value, accepted: frozenset[object]) -> bool:
    if isinstance(value, bool):
        return any(item is value for item in accepted)
    return any(item == value and not isinstance(item, bool) for item in accepted)


def accepted_values(wanted: Sequence[bool | int | float | str],
                    enum: dict[int, str] | None) -> frozenset[object]:
    """The sample values that mean one of `wanted`: enum labels become their codes; booleans
    match booleans only."""
    out: set[object] = set()
    labels = {label: code for code, label in (enum or {}).items()}
    for item in wanted:
        if isinstance(item, str) and item in labels:
            out.add(labels[item])
        out.add(item)
    return frozenset(out)


class StaleLeaf(_Leaf):
    """No good sample for `max_age` seconds (not counted while the device is offline)."""

    __slots__ = ("member", "value")
    shape: _StaleShape

    def __init__(self, member: PointState, max_age: float, include_offline: bool = False
                 ) -> None:
        self.member = member
        self._start(shared(_StaleShape, 0.0, 0.0, max_age, include_offline))
        self.value: Value = None

    max_age: Field[float] = Field()
    include_offline: Field[bool] = Field()

    def eval(self, now: float) -> bool:
        member = self.member
        age = now - member.last_good_t
        shape = self.shape
        stale = age >= shape.max_age and (shape.include_offline or not member.offline)
        # the age in whole seconds when it went stale, kept while stale (a value that grew
        # every second would need a round every second: gateway.rules.schedule)
        if not stale:
            self.value = None
        elif self.value is None:
            self.value = round(age)
        if not stale and not member.seen_good and not member.offline:
            return self.step(None, now)  # no good sample yet: cannot say "fresh"
        return self.step(stale, now)


class FlatLeaf(_Leaf):
    """The point's good values have stayed within epsilon for `window` seconds. The leaf is
    its point's flat-line tracker (a `Flat`, in `member.flats`): no object beside it."""

    __slots__ = ("epsilon", "high", "low", "member", "moved", "since", "value")
    shape: _FlatShape

    def __init__(self, member: PointState, window: float, epsilon: float) -> None:
        self.member = member
        self._start(shared(_FlatShape, 0.0, 0.0, window))
        self.epsilon = flat_epsilon(epsilon)  # read at every sample (a slot, not the shape's)
        self.low = self.high = 0.0
        self.since: float | None = None
        self.moved = False
        member.flats += (self,)
        self.value: Value = None

    window: Field[float] = Field()

    @property
    def tracker(self) -> FlatLeaf:
        """The leaf's flat-line tracker: the leaf itself."""
        return self

    def add(self, t: float, value: float) -> None:
        track(self, t, value)

    def flat_for(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since

    def eval(self, now: float) -> bool:
        member = self.member
        if not member.good:
            return self.step(None, now)
        self.value = member.value
        tracker = self
        raw: bool | None = tracker.flat_for(now) >= self.shape.window
        if not raw and not tracker.moved:
            raw = None  # too short a history to say it is not flat
        return self.step(raw, now)


class InvalidLeaf(_Leaf):
    """The point's samples have had quality invalid for `duration` seconds."""

    __slots__ = ("member", "value")
    shape: _InvalidShape

    def __init__(self, member: PointState, duration: float) -> None:
        self.member = member
        self._start(shared(_InvalidShape, 0.0, 0.0, duration))
        self.value: Value = None

    duration: Field[float] = Field()

    def eval(self, now: float) -> bool:
        member = self.member
        since = member.invalid_since
        self.value = member.value
        raw: bool | None
        if since is not None and now - since >= self.shape.duration:
            raw = True
        else:
            raw = False if member.good else None
        return self.step(raw, now)


# --- what the leaves of one plan share (`_Leaf`) ------------------------------------------------

class _CompareShape(Delays):
    __slots__ = ("saturable", "side", "test")
    """`test`: judged with the leaf's held output as its latch (`Test.judge`), it keeps no
    state of the leaf's (gateway.rules.compiler). `saturable`: the signal counts over- and
    under-range readings (`read_beyond`; for one point's own value `eval` reads
    `point.beyond()` inline, keeping no signal). `side`: the test's normal side, once
    gateway.rules.quiet found a leaf of the plan gated."""

    def __init__(self, on_delay: float, off_delay: float, test: Test, saturable: bool) -> None:
        super().__init__(on_delay, off_delay)
        self.test, self.saturable = test, saturable
        self.side: tuple[float, float] | None = None


class _StaleShape(Delays):
    __slots__ = ("include_offline", "max_age")

    def __init__(self, on_delay: float, off_delay: float, max_age: float,
                 include_offline: bool) -> None:
        super().__init__(on_delay, off_delay)
        self.max_age, self.include_offline = max_age, include_offline


class _FlatShape(Delays):
    __slots__ = ("window",)

    def __init__(self, on_delay: float, off_delay: float, window: float) -> None:
        super().__init__(on_delay, off_delay)
        self.window = window


class _InvalidShape(Delays):
    __slots__ = ("duration",)

    def __init__(self, on_delay: float, off_delay: float, duration: float) -> None:
        super().__init__(on_delay, off_delay)
        self.duration = duration
