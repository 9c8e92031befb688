"""Continuity of rule evaluation: carry node and point state into a new config, hold restored
alarms. Pure, no clock: the engine (`RuleEngine.adopt`, `RuleEngine.hold`) calls it.

A config apply builds a new `RuleEngine` with new `PointState`s and freshly compiled nodes.
Without this module the new nodes would start normal with no data, and every alarm whose
input had not yet been read again by the new bus loops would return (and re-activate after
its on-delay with a new activation time). Instead:

* `carry_point` copies what is known of a point (latest value and quality, last good time,
  invalid-since) into the new engine's state for the same point id;
* `carry_node` copies the evaluation state of one (rule, subject)'s condition tree into the
  tree compiled for the new config: debounce timers and the held output, the hysteresis
  latch, rate windows (by member point), flat-line trackers, the last values of active
  leaves (a normal leaf's value is not kept up to date between evaluations: a new value on
  the normal side of its limit does not evaluate it, gateway.rules.quiet). Children of a
  combinator are matched by what they are (node kind and the points they read), so a room
  that gained a detector keeps the state of the detectors it had. The new tree keeps its new
  numbers (limits, deadband, delays): a rule whose parameters changed is re-judged from the
  carried state at its next evaluation — an active alarm still past its new limit stays
  active and never passes through "returned";
* `hold` makes a tree active without data: for an alarm that the alarm manager holds active
  (restored from the journal at a restart, or whose tree could not be carried) — it then
  stays active until good data past limit − deadband (after its off-delay) says otherwise,
  and no on-delay is run again;
* `held` is a tree's held output now, without advancing any timer.
"""

from __future__ import annotations

from gateway.field.sample import Value
from gateway.rules.conditions import Debounce, DewPointSignal, PointState, Signal
from gateway.rules.nodes import (
    AllNode,
    AnyNode,
    AtLeastNode,
    CompareLeaf,
    EqualsLeaf,
    FlatLeaf,
    InvalidLeaf,
    Node,
    StaleLeaf,
)
from gateway.rules.rate import RateSignal, RateWindow

Combinator = AllNode | AnyNode | AtLeastNode
_COMBINATORS = (AllNode, AnyNode, AtLeastNode)
_SINGLE = (StaleLeaf, FlatLeaf, InvalidLeaf)


def carry_point(new: PointState, old: PointState) -> None:
    """What is known of a point, into the new engine's state of the same point."""
    new.value = old.value
    new.good = old.good
    new.ts_ns = old.ts_ns
    new.t = old.t
    new.last_good_t = old.last_good_t
    new.invalid_since = old.invalid_since
    new.seen_good = old.seen_good
    new.fresh = False


def carry_node(new: Node, old: Node) -> bool:
    """Copy the evaluation state of `old` (the same (rule, subject) under the previous config)
    into `new`. True when every node of `new` took the state of a node of its kind."""
    if type(new) is not type(old):
        return False
    if isinstance(new, _COMBINATORS):
        assert isinstance(old, _COMBINATORS)
        return _carry_children(new, old)
    if isinstance(new, CompareLeaf):
        assert isinstance(old, CompareLeaf)
        _carry_debounce(new.debounce, old.debounce)  # the test's latch is the held output
        new.value = old.value if old.debounce.active else None  # see the module docstring
        return _carry_signal(new.signal, old.signal)
    if isinstance(new, EqualsLeaf | StaleLeaf | InvalidLeaf | FlatLeaf):
        assert isinstance(old, EqualsLeaf | StaleLeaf | InvalidLeaf | FlatLeaf)
        _carry_debounce(new.debounce, old.debounce)
        new.value = old.value if old.debounce.active else None  # see the module docstring
        if isinstance(new, FlatLeaf) and isinstance(old, FlatLeaf):
            tracker, before = new.tracker, old.tracker
            tracker.low, tracker.high = before.low, before.high
            tracker.since, tracker.moved = before.since, before.moved
        return True
    return False


def hold(node: Node, value: Value = None) -> None:
    """Make `node` (and every leaf under it) active with no timer running: it then stays active
    until its own inputs, good, say otherwise."""
    if isinstance(node, _COMBINATORS):
        for child in node.children:
            hold(child)
        return
    debounce: Debounce | None = getattr(node, "debounce", None)
    if debounce is None:
        return
    debounce.active = True
    debounce.on_since = debounce.off_since = None  # a compare leaf's latch with it
    if value is not None:
        node.value = value


def held(node: Node) -> bool:
    """The node's held output now (no timer advanced, no input read)."""
    if isinstance(node, AllNode):
        return all(held(child) for child in node.children)
    if isinstance(node, AnyNode):
        return any(held(child) for child in node.children)
    if isinstance(node, AtLeastNode):
        if node.groups is None:
            return sum(1 for child in node.children if held(child)) >= node.count
        active = {g for child, g in zip(node.children, node.groups, strict=True) if held(child)}
        return len(active) >= node.count
    debounce: Debounce | None = getattr(node, "debounce", None)
    return debounce is not None and debounce.active


# --- internals --------------------------------------------------------------------------------


def _carry_debounce(new: Debounce, old: Debounce) -> None:
    new.active = old.active
    new.on_since = old.on_since
    new.off_since = old.off_since


def _carry_children(new: Combinator, old: Combinator) -> bool:
    """Children matched by signature (kind and points read), else by position and kind."""
    unused = list(range(len(old.children)))
    signatures = [_signature(child) for child in old.children]
    complete = len(new.children) == len(old.children)
    for index, child in enumerate(new.children):
        signature = _signature(child)
        match = next((i for i in unused if signatures[i] == signature), None)
        if match is None and index in unused and \
                type(old.children[index]) is type(child):
            match = index
        if match is None:
            complete = False
            continue
        unused.remove(match)
        complete = carry_node(child, old.children[match]) and complete
    return complete


def _carry_signal(new: Signal, old: Signal) -> bool:
    if isinstance(new, RateSignal):
        if not isinstance(old, RateSignal):
            return False
        windows = {member.id: window
                   for member, window in zip(old.members, old.windows, strict=True)}
        complete = True
        for member, window in zip(new.members, new.windows, strict=True):
            before = windows.get(member.id)
            if before is None:
                complete = False
            else:
                _carry_window(window, before)
        return complete
    return type(new) is type(old)


def _carry_window(new: RateWindow, old: RateWindow) -> None:
    new.take(old)


def _signature(node: Node) -> tuple[object, ...]:
    kind = type(node).__name__
    if isinstance(node, _COMBINATORS):
        return (kind, tuple(_signature(child) for child in node.children))
    if isinstance(node, _SINGLE):
        return (kind, node.member.id)
    if isinstance(node, EqualsLeaf):
        return (kind, tuple(m.id for m in node.members))
    if isinstance(node, CompareLeaf):
        signal = node.signal
        if isinstance(signal, DewPointSignal):
            members: tuple[PointState, ...] = (*signal.temperature, *signal.rh)
        else:
            members = tuple(getattr(signal, "members", ()))
        return (kind, type(signal).__name__, tuple(m.id for m in members))
    return (kind,)
