"""A YAML syntax error says its column, says a tab is a tab, and names the part of the file it
is in (not `(top)` for an error deep inside it), with libyaml's parser and PyYAML's own.

The audit (m6): a config with a tab for indentation gave `m6_tabs.yaml:8: (top): not valid
YAML: found character that cannot start any token` — no column, no word of a tab, and a path
that pointed at the whole file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import yamlsafe
from gateway.config.check_all import check_config
from gateway.config.loader import ConfigError, ConfigErrors, load_gateway_config, parse_yaml
from tests.shipped import FIRMWARE_CONFIGS

TAB_REASON = ("a tab in the indentation: YAML indents with spaces, never tabs; replace the "
              "tab with spaces")

LOADERS = ["libyaml", "pure"] if yamlsafe.HAVE_LIBYAML else ["pure"]


@pytest.fixture(params=LOADERS)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test with libyaml's parser (the gateway's) and PyYAML's pure-Python one."""
    if request.param == "pure":
        monkeypatch.setattr(yamlsafe, "LimitedLoader", yamlsafe.PureLimitedLoader)
    yield request.param


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigErrors) as caught:
        parse_yaml(text, "m6_tabs.yaml")
    [error] = caught.value.errors
    return error


@pytest.mark.parametrize(("text", "line", "column", "path"), [
    # a key of a mapping indented with a tab: libyaml reads the line as more of the scalar
    # before it (`a`), PyYAML as a token that cannot start: both are `gateway`'s
    ("version: 1\ngateway:\n  id: a\n\tsite: b\nrooms: []\n", 4, 1, ("gateway",)),
    ("version: 1\ngateway:\n  id: a  # the id\n\tsite: b\n", 4, 1, ("gateway",)),
    # the first item of a list indented with a tab: the list's key
    ("version: 1\nrooms:\n\t- id: x\n", 3, 1, ("rooms",)),
    ("version: 1\nrooms:   # every room\n\t- id: x\n", 3, 1, ("rooms",)),
    # a key of a list's item: the item
    ("rooms:\n  - id: x\n\ttype: battery\n", 3, 1, ("rooms", 0)),
    # spaces, then a tab
    ("a:\n  b: 1\n  \tc: 2\n", 3, 3, ("a",)),
    # the first line of the file
    ("\tversion: 1\n", 1, 1, ()),
    # Windows line ends
    ("a:\r\n  b: 1\r\n\tc: 2\r\n", 3, 1, ("a",)),
])
def test_a_tab_in_the_indentation_is_said_plainly_with_its_column_and_path(
        loader: str, text: str, line: int, column: int, path: tuple[str | int, ...]) -> None:
    error = _error(text)
    assert (error.line, error.path) == (line, path), str(error)
    assert error.reason == f"not valid YAML at column {column}: {TAB_REASON}"


def test_a_tab_after_a_list_dash_is_a_tab_too(loader: str) -> None:
    error = _error("a:\n  - 1\n  -\t2\n")
    assert (error.line, error.path) == (3, ("a",))
    assert error.reason == ("not valid YAML at column 4: a tab: YAML separates with spaces "
                            "here; replace the tab with a space")


def test_other_syntax_errors_say_their_column_and_where_they_started(loader: str) -> None:
    """`could not find expected ':'` is found on the line after the one missing it: the
    reason says where the parser started what it could not finish."""
    error = _error("a:\n  b: 1\n  c d\n  e: 2\n")
    assert (error.line, error.path) == (4, ("a",))
    assert error.reason == ("not valid YAML at column 3: could not find expected ':' (while "
                            "scanning a simple key that starts at line 3, column 3)")
    error = _error("gateway: {id: gw, site: [unclosed\nrooms:\n")
    assert error.path == ("gateway", "site") and error.line == 2
    assert error.reason.startswith("not valid YAML at column 6: ")
    assert "flow sequence that starts at line 1, column 25" in error.reason


def test_check_of_the_shipped_site_with_a_tab(tmp_path: Path) -> None:
    """The audit's case, on the shipped telecom site: `roomwarden check` names the line, the
    column, the tab and the section (gateway), not `(top)`."""
    text = (FIRMWARE_CONFIGS / "telecom_equipment_room.yaml").read_text()
    lines = text.splitlines(keepends=True)
    number = lines.index("  site: gz-tianhe-exchange\n")
    lines[number] = "\tsite: gz-tianhe-exchange\n"
    path = tmp_path / "m6_tabs.yaml"
    path.write_text("".join(lines))
    [error] = check_config(path).errors
    assert str(error) == (f"{path}:{number + 1}: gateway: not valid YAML at column 1: "
                          f"{TAB_REASON}")


def test_a_tab_where_yaml_allows_one_is_no_error(loader: str) -> None:
    if loader == "pure":
        pytest.skip("PyYAML's own scanner refuses a tab before a comment too")
    data, _ = parse_yaml("a:\n  b: 1   \t# a comment after a tab\n", "ok.yaml")
    assert data == {"a": {"b": 1}}


def test_a_sexagesimal_float_past_a_floats_range_is_refused_not_a_traceback(
        tmp_path: Path) -> None:
    """YAML 1.1 reads `1:1:…:1.0` as a base-60 float; 180 parts overflow a float, and the
    loader raised OverflowError from `roomwarden check` (the config audit)."""
    path = tmp_path / "sexagesimal.yaml"
    path.write_text("x: " + ":".join(["1"] * 180) + ".0\n")
    with pytest.raises(ConfigErrors) as refused:
        load_gateway_config(path)
    assert "refused:" in str(refused.value) and "too large" in str(refused.value)
    assert main(["check", str(path)]) == 1


@pytest.mark.parametrize(("mapping", "twice"), [
    ("{1: normal, 0x1: FIRE}", "'0x1' appears twice in this mapping (as 1)"),
    ("{1: normal, 01: other}", "'01' appears twice in this mapping (as 1)"),
    ("{yes: a, true: b}", "'true' appears twice in this mapping (as True)"),
    ("{0.5: a, 0.50: b}", "'0.50' appears twice in this mapping (as 0.5)"),
])
def test_keys_written_differently_that_read_the_same_are_duplicates(mapping: str,
                                                                    twice: str) -> None:
    """An enum `{1: normal, 0x1: FIRE}` read 1 as FIRE without a word (the last key wins): the
    duplicate check compared the keys as written (the config audit)."""
    with pytest.raises(ConfigErrors) as refused:
        parse_yaml(f"enum: {mapping}\n", "dk.yaml")
    assert twice in str(refused.value)


def test_keys_that_only_look_alike_are_not_duplicates() -> None:
    data, _ = parse_yaml("enum: {1: a, '1': b, 2: c, 0x10: d}\n", "ok.yaml")
    assert data == {"enum": {1: "a", "1": "b", 2: "c", 16: "d"}}


def test_control_characters_of_a_file_are_shown_escaped_not_sent_to_the_terminal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key holding an escape sequence (ESC [2J clears the screen) or a right-to-left
    override was printed by `roomwarden check` as it was: the terminal acted on it."""
    path = tmp_path / "ansi.yaml"
    path.write_text(FIRMWARE_CONFIGS.joinpath("telecom_equipment_room.yaml").read_text()
                    + '"evil\\e[2J\\u202ekey": 1\n')
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    printed = out.out + out.err
    assert "evil\\x1b[2J\\u202ekey" in printed, printed
    assert "\x1b" not in printed and "\u202e" not in printed
