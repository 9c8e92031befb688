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
from gateway.rules.conditions import (
    NUMBER,
    Debounce,
    FlatTracker,
    GroupSignal,
    PointState,
    Signal,
    Test,
    ValueSignal,
)
from gateway.rules.rate import RateSignal, rising


class Node(Protocol):
    value: Value

    def eval(self, now: float) -> bool: ...


class _Leaf(Debounce):
    """A leaf is its own `Debounce` (its on/off delays and held output are its own slots: no
    object per leaf for them; 40 bytes less a leaf, and a site has thousands)."""

    __slots__ = ()

    def _take(self, debounce: Debounce) -> None:
        """`debounce`'s delays and state as this leaf's own."""
        self.on_delay, self.off_delay = debounce.on_delay, debounce.off_delay
        self.active, self.on_since, self.off_since = (debounce.active, debounce.on_since,
                                                      debounce.off_since)

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

    __slots__ = ("_signal", "members", "point", "rate", "saturable", "side", "test", "value")

    def __init__(self, signal: Signal, test: Test, debounce: Debounce,
                 members: Sequence[PointState] = ()) -> None:
        self.side: tuple[float, float] | None = None
        """The test's normal side, once gateway.rules.quiet found the leaf gated."""
        self.point = signal.single if type(signal) is ValueSignal else None
        self._signal = None if self.point is not None else signal
        """None for one point's own value (`signal` makes it when asked: no object per
        leaf that eval never reads)."""
        self.rate = signal if isinstance(signal, RateSignal) else None
        self.saturable = isinstance(signal, ValueSignal) or (isinstance(signal, GroupSignal)
                                                             and signal.monotone)
        """The signal counts over- and under-range readings (`read_beyond`). A flag, not the
        signal: one point's own value keeps no signal (`eval` reads `point.beyond()` inline;
        keeping its `ValueSignal` for this cost ~100 bytes a leaf)."""
        self.test = test
        """Judged with the leaf's held output as its latch (`Test.judge`): it keeps no state
        of the leaf's, so the leaves of one plan share one (gateway.rules.compiler)."""
        self._take(debounce)
        self.members = tuple(members) if len(members) > 1 else ()
        self.value: Value = None

    @property
    def signal(self) -> Signal:
        """The signal the leaf judges (for one point's own value, a `ValueSignal` of it made
        now: its key is not read for one member)."""
        signal = self._signal
        return ValueSignal((self.point,), rising) if signal is None else signal  # type: ignore[arg-type]

    def eval(self, now: float) -> bool:
        point = self.point
        if point is not None:  # one point's value: ValueSignal.read inline, no rate, no group
            number = point.value
            if not point.good or not isinstance(number, NUMBER):
                side = point.beyond()
                if side:  # over- or under-range: past a limit on its side counts
                    reading = float(number)  # type: ignore[arg-type]  # beyond: a number
                    if self.test.past(reading, side, self.active):
                        self.value = reading
                        return self.step(True, now)
                return self.step(None, now)
            self.value = number = float(number)
            return self.step(self.test.judge(number, self.active), now)
        value = self._signal.read(now)  # type: ignore[union-attr]  # not one point's value
        test = self.test
        latched = self.active
        raw: bool | None = None
        if value is not None:
            self.value = value
            raw = test.judge(value, latched)
            if not raw:
                rate = self.rate
                if rate is not None and rate.ceiling is not None and test.judge(rate.ceiling,
                                                                                latched):
                    # the rate's two-sided noise guard: its calm end is not past the limit,
                    # but while the other end is, "not exceeded" is not yet known
                    raw = None
                if not raw and self.members and not all(m.good for m in self.members):
                    raw = None
        if not raw and self.saturable:  # a member's reading beyond its valid range
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

    __slots__ = ("include_offline", "max_age", "member", "value")

    def __init__(self, member: PointState, max_age: float, include_offline: bool = False
                 ) -> None:
        self.member = member
        self.max_age = max_age
        self.include_offline = include_offline
        Debounce.__init__(self)
        self.value: Value = None

    def eval(self, now: float) -> bool:
        member = self.member
        age = now - member.last_good_t
        stale = age >= self.max_age and (self.include_offline or not member.offline)
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
    """The point's good values have stayed within epsilon for `window` seconds."""

    __slots__ = ("member", "tracker", "value", "window")

    def __init__(self, member: PointState, window: float, epsilon: float) -> None:
        self.member = member
        self.window = window
        self.tracker = FlatTracker(epsilon)
        member.flats += (self.tracker,)
        Debounce.__init__(self)
        self.value: Value = None

    def eval(self, now: float) -> bool:
        member = self.member
        if not member.good:
            return self.step(None, now)
        self.value = member.value
        tracker = self.tracker
        raw: bool | None = tracker.flat_for(now) >= self.window
        if not raw and not tracker.moved:
            raw = None  # too short a history to say it is not flat
        return self.step(raw, now)


class InvalidLeaf(_Leaf):
    """The point's samples have had quality invalid for `duration` seconds."""

    __slots__ = ("duration", "member", "value")

    def __init__(self, member: PointState, duration: float) -> None:
        self.member = member
        self.duration = duration
        Debounce.__init__(self)
        self.value: Value = None

    def eval(self, now: float) -> bool:
        member = self.member
        since = member.invalid_since
        self.value = member.value
        raw: bool | None
        if since is not None and now - since >= self.duration:
            raw = True
        else:
            raw = False if member.good else None
        return self.step(raw, now)


class AllNode:
    __slots__ = ("children", "value")

    def __init__(self, children: Sequence[Node]) -> None:
        self.children = tuple(children)
        self.value: Value = None

    def eval(self, now: float) -> bool:
        result = True
        decider: Node | None = None
        for child in self.children:  # evaluate all: every child's timers must advance
            if not child.eval(now) and result:
                result = False
                decider = child
        self.value = (decider or self.children[0]).value
        return result


class AnyNode:
    __slots__ = ("children", "value")

    def __init__(self, children: Sequence[Node]) -> None:
        self.children = tuple(children)
        self.value: Value = None

    def eval(self, now: float) -> bool:
        result = False
        decider: Node | None = None
        for child in self.children:
            if child.eval(now) and not result:
                result = True
                decider = child
        self.value = (decider or self.children[0]).value
        return result


class AtLeastNode:
    """At least `count` children active; with `groups`, children of one group (one device)
    count once, so two flags of one detector are not two independent detectors."""

    __slots__ = ("children", "count", "groups", "value")

    def __init__(self, children: Sequence[Node], count: int,
                 groups: Sequence[str] | None = None) -> None:
        self.children = tuple(children)
        self.count = count
        self.groups = tuple(groups) if groups is not None else None
        self.value: Value = 0

    def eval(self, now: float) -> bool:
        groups = self.groups
        if groups is None:
            active = sum(1 for child in self.children if child.eval(now))
        else:
            seen = {group for child, group in zip(self.children, groups, strict=True)
                    if child.eval(now)}
            active = len(seen)
        self.value = active
        return active >= self.count
