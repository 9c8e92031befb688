"""A serial text profile's `request` and `reply_terminator` are written with Python escapes
(`Q1\\r`, `\\x03`). An escape Python does not know (`\\q`, a backslash before a non-ASCII
character, a lone backslash at the end) is refused when the profile is read, naming the field
and the escape: Python's own decoder only warns (a DeprecationWarning the full test run
printed) and would send the backslash to the device as it is."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.errors import ConfigErrors
from gateway.config.escapes import unescape
from gateway.config.loader import load_profile

PROFILE = """\
kind: serial_text
id: escapes
manufacturer: test
model: test
generic: true
source: tests
request: {request}
reply_terminator: {terminator}
reply_pattern: '(?P<v>\\d+)'
fields:
  - {{name: v, group: v, type: float, unit: degC, quantity: temperature}}
"""


def _write(tmp_path: Path, request: str, terminator: str = "'\\r'") -> Path:
    path = tmp_path / "escapes.yaml"
    path.write_text(PROFILE.format(request=request, terminator=terminator))
    return path


@pytest.mark.parametrize(("request_", "sent"), [
    ("'Q1\\r'", b"Q1\r"), ('"Q1\\r"', b"Q1\r"), ("'\\x02R\\x03'", b"\x02R\x03"),
    ("'\\101\\t'", b"A\t"), ("'a\\\\q'", b"a\\q"), ("'\\377\\1234'", b"\xffS4")])
def test_known_escapes_are_sent_as_written(tmp_path: Path, request_: str, sent: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        profile = load_profile(_write(tmp_path, request_))
    assert profile.request_bytes == sent  # type: ignore[union-attr]


@pytest.mark.parametrize(("field", "written", "told"), [
    ("request", "'Q1\\q'", "unknown escape \\q"),
    ("request", "'Q1\\'", "ends in a lone \\"),
    ("reply_terminator", "'\\e'", "unknown escape \\e"),
    ("request", "'Q\\é'", "before a non-ASCII character"),
    ("request", "'Q\\700'", "octal escape \\700 is past \\377"),
])
def test_an_unknown_escape_is_refused_naming_file_field_and_escape(
        tmp_path: Path, field: str, written: str, told: str) -> None:
    request_, terminator = (written, "'\\r'") if field == "request" else ("'Q1\\r'", written)
    path = _write(tmp_path, request_, terminator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigErrors) as caught:
            load_profile(path)
    text = str(caught.value)
    assert str(path) in text and field in text and told in text, text


def test_a_backslash_before_a_non_ascii_character_is_refused() -> None:
    with pytest.raises(ValueError, match="before a non-ASCII character"):
        unescape("Q\\é", "utf-8")


@given(st.text(alphabet=st.sampled_from(["\\", "r", "n", "x", "0", "7", "q", "é", "u", "N",
                                         "{", "}", "a", "'", "\n", "3", "f"]), max_size=12),
       st.sampled_from(["ascii", "utf-8", "latin-1", "gbk"]))
def test_any_text_is_bytes_or_a_value_error_never_a_warning(text: str, encoding: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            sent = unescape(text, encoding)
        except ValueError:  # UnicodeError too: the validator words both
            return
    assert isinstance(sent, bytes)
    if "\\" not in text:
        assert sent == text.encode(encoding)


@pytest.mark.parametrize("encoding", ["rot13", "hex", "base64", "no-such-codec"])
def test_a_codec_that_is_no_text_encoding_is_refused_naming_it(tmp_path: Path,
                                                               encoding: str) -> None:
    """`rot13` and `hex` are codecs Python knows but no text encodings: the profile was taken
    and reading it raised a LookupError (a traceback from `roomwarden check`)."""
    path = _write(tmp_path, "'Q1\\r'")
    path.write_text(path.read_text() + f"encoding: {encoding}\n")
    with pytest.raises(ConfigErrors) as refused:
        load_profile(path)
    assert f"encoding {encoding!r} is not a text encoding" in str(refused.value)
