"""Python escapes in a serial text profile's `request` and `reply_terminator` (`Q1\\r`,
`\\x03`): checked when the profile is read (`escapes_known`, at the field's key) and applied to
make the bytes the poller sends (`unescape`)."""

from __future__ import annotations

import re


def escapes_known(text: str) -> str:
    """`text`, or ValueError naming an escape Python does not know: `\\q`, a backslash
    before a non-ASCII character, a lone one at the end (Python's decoder only warns about
    them, and would send the backslash as it is)."""
    for escape in _ESCAPE.finditer(text):
        after = escape[1]
        if after[:1] in _OCTAL:
            if int(after, 8) > 0o377:
                raise ValueError(f"octal escape \\{after} is past \\377 (one byte)")
            continue
        if not after:
            raise ValueError("it ends in a lone \\ (write \\\\ for a backslash)")
        if after not in _KNOWN_ESCAPES:
            shown = f"\\{after}" if after.isascii() else "\\ before a non-ASCII character"
            raise ValueError(f"unknown escape {shown} (known: \\r \\n \\t \\\\ \\xhh "
                             "\\ooo \\uhhhh \\a \\b \\f \\v \\' \\\")")
    return text


_ESCAPE = re.compile(r"\\([0-7]{1,3}|.?)", re.S)
"""A backslash and what follows it: up to three octal digits (Python reads as many), or one
character (none at the end)."""
_OCTAL = frozenset("01234567")
_KNOWN_ESCAPES = frozenset("\n\\'\"abfnrtv01234567xuUN")


def unescape(text: str, encoding: str) -> bytes:
    """Bytes of `text` with Python escapes (`\\r`, `\\x03`) applied, however YAML quoted it;
    ValueError for an escape Python does not know (`escapes_known`), in the bytes as sent."""
    data = text.encode(encoding)
    escapes_known(data.decode("latin-1"))  # (a multi-byte character may hold a 0x5c byte)
    return data.decode("unicode_escape").encode("latin-1")
