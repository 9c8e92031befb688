"""The recorder's table of steps' parts (gateway/recorder/parts.py) against a counter: any
sequence of holds and releases leaves it holding exactly the parts held more often than
released, each under the number it was given, equal parts under one number, and no more
slots than parts were ever held at once."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from gateway.recorder.parts import Parts

PARTS = [bytes([i]) * (i % 3 + 1) for i in range(6)]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, len(PARTS) - 1)), max_size=80))
def test_the_table_holds_what_is_held(steps: list[tuple[bool, int]]) -> None:
    table, held, numbers = Parts(), Counter[bytes](), dict[bytes, int]()
    most = 0
    for hold, which in steps:
        part = PARTS[which]
        if hold:
            number = table.hold(bytes(part))  # (an equal part, another object)
            assert numbers.setdefault(part, number) == number
            held[part] += 1
        elif held[part]:
            table.release(numbers[part])
            held[part] -= 1
            if not held[part]:
                del numbers[part]
        most = max(most, len(+held))
        assert len(table) == len(+held)
        assert all(table[n] == p for p, n in numbers.items())
    assert len(table._parts) <= most
