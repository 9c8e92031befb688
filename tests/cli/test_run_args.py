"""`roomwarden run`'s command line read without argparse (gateway.run_cli.parse_run, issue 15):
whatever it takes, it reads as the `run` command's argparse parser does — the same values, the
same defaults —, and whatever it does not take exactly (help, abbreviations, bad values) it
leaves to that parser."""

from __future__ import annotations

import contextlib
import io

from hypothesis import given
from hypothesis import strategies as st

from gateway.cli import build_parser
from gateway.run_cli import RUN_OPTIONS, parse_run


def argparse_reads(argv: list[str]) -> dict[str, object] | None:
    """The values the `run` command's own parser gives `run` + `argv`; None if it refuses or
    leaves words over (which every command's parser then refuses: gateway.cli)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            args, unknown = build_parser(run_only=True).parse_known_args(["run", *argv])
        except SystemExit:
            return None
    return None if unknown else vars(args)


def test_every_option_is_read_as_argparse_reads_it() -> None:
    for argv in (["site.yaml"],  # the defaults: an option argparse has and this not fails here
                 ["site.yaml", "--duration", "3s", "--print", "500ms", "--state-dir", "s",
                  "--socket", "c.sock", "--panel-port", "0", "-v"],
                 ["--control=c.sock", "--verbose", "--duration=2m", "site.yaml",
                  "--panel-port=8080", "--state-dir="],
                 ["--duration", "1", "site.yaml", "--duration", "90", "--print=1.5"],
                 ["a=b.yaml", "--state-dir=--odd"], [""]):
        read = parse_run(argv)
        assert read is not None, argv
        assert vars(read) == argparse_reads(argv), argv


def test_what_it_does_not_take_exactly_is_left_to_argparse() -> None:
    for argv in ([], ["a", "b"], ["--help"], ["x", "-h"], ["x", "--dur", "3s"],
                 ["x", "--duration", "soon"], ["x", "--duration", "-1"], ["x", "--panel-port",
                 "-1"], ["x", "--panel-port", "eight"], ["x", "--verbose=1"], ["x", "-vv"],
                 ["--", "x"], ["-"], ["x", "--state-dir"], ["x", "--state-dir", "-"]):
        assert parse_run(argv) is None, argv
    assert argparse_reads(["x", "--dur", "3s"]) is not None  # (what argparse takes and it not)


VALUES = st.one_of(st.sampled_from(["", "0", "-1", "3s", "500ms", "1.5", "2m", "nan", "inf",
                                     "1e3", " 7 ", "soon", "9999999h", "65536", "_1", "1_000",
                                     "-", "--verbose", "x=y"]), st.text(max_size=5))
OPTIONS = st.sampled_from(sorted(RUN_OPTIONS) + ["--dur", "--sock", "-h", "--", "-", "-vv"])
PIECES = st.one_of(
    st.tuples(OPTIONS, VALUES),  # an option and a word after it
    st.builds(lambda option, value: (f"{option}={value}",), OPTIONS, VALUES),
    st.tuples(OPTIONS),
    st.tuples(VALUES),  # a positional word, or anything
)


@given(st.lists(PIECES, max_size=6), VALUES)
def test_what_it_takes_argparse_reads_the_same(pieces: list[tuple[str, ...]], config: str
                                               ) -> None:
    argv = [word for piece in pieces for word in piece]
    argv.insert(len(argv) // 2, config)
    read = parse_run(argv)
    if read is not None:
        assert vars(read) == argparse_reads(argv)
