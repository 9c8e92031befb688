"""'Did you mean …?': the nearest of the names a file could have used, for an error that names
one it cannot use (an unknown key, device, output, rule …)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, names: Iterable[str], cutoff: float = 0.7) -> str | None:
    """The name most like `word` (difflib's ratio at least `cutoff`), or None."""
    found = difflib.get_close_matches(word, sorted(names), n=1, cutoff=cutoff)
    return found[0] if found else None
