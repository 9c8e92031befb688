"""Regular expressions a config gives the gateway to run: what shape would make one slow.

A serial-text profile's `reply_pattern` is matched against every reply; a pattern that repeats
a repeat without bound (`(\\d+)+`) can backtrack for minutes on a line that nearly matches, so
the check refuses it (the serial-text audit: it held every bus). The check finds the common
shape, not every slow pattern (eight `(.*)` in a row passed it: the redos audit), so the poller
also bounds each poll's matching (gateway.field.serial_text.MATCH_BUDGET)."""

from __future__ import annotations

from typing import Any


def nests_unbounded_repeats(pattern: str) -> bool:
    """An unbounded repeat (`+`, `*`, `{n,}`) inside another: the shape of the patterns whose
    matching can take exponential time."""
    # the standard library's own pattern parser (no stubs; `sre_parse` is its deprecated name)
    import re._constants as c  # type: ignore[import-not-found]
    import re._parser as parser  # type: ignore[import-not-found]

    def walk(items: Any, inside: bool) -> bool:
        for op, av in items:
            if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                unbounded = av[1] == c.MAXREPEAT
                if (unbounded and inside) or walk(av[2], inside or unbounded):
                    return True
                continue
            parts = ([av[3]] if op is c.SUBPATTERN else av[1] if op is c.BRANCH
                     else [av[1]] if op in (c.ASSERT, c.ASSERT_NOT) else [])
            if any(walk(part, inside) for part in parts):
                return True
        return False  # (possessive repeats and atomic groups do not backtrack)

    return walk(parser.parse(pattern), False)
