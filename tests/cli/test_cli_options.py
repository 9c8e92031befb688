"""Every `roomwarden` subcommand explains itself and takes durations with units (issue 14)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.cli import build_parser, parse_arguments


def subcommands(parser: argparse.ArgumentParser,
                path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                              argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from subcommands(child, (*path, name))


ALL = list(subcommands(build_parser()))


def test_there_are_subcommands() -> None:
    names = {" ".join(p) for p, _ in ALL}
    assert {"run", "status", "check", "demo", "passwd", "flash", "config apply", "ack"} <= names


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_subcommand_and_option_is_described(path: tuple[str, ...],
                                                  parser: argparse.ArgumentParser) -> None:
    assert parser.description, f"{' '.join(path)} has no description"
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
               and not a.help]
    assert missing == [], f"{' '.join(path)}: no help for {missing}"


def _help(path: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *path, "--help"],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """`roomwarden … --help` of every subcommand, each in a fresh interpreter, several at a time
    (each is mostly interpreter start-up: one after the other they took 40-75 s)."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(zip([p for p, _ in ALL], pool.map(_help, [p for p, _ in ALL]), strict=True))


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=[" ".join(p) for p, _ in ALL])
def test_help_runs(path: tuple[str, ...],
                   helps: dict[tuple[str, ...], subprocess.CompletedProcess[str]]) -> None:
    out = helps[path]
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_run_parses_alone_as_among_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`roomwarden run …` parses with the `run` command's parser alone (issue 15: a running
    gateway imports no other command's module): the same help, values and errors as every
    command's parser gives."""
    def run_of(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return dict(subcommands(parser))[("run",)]

    assert run_of(build_parser(run_only=True)).format_help() == run_of(build_parser()).format_help()
    for argv in (["run", "x.yaml"], ["run", "x.yaml", "--control", "c.sock", "-v"],
                 ["run", "x.yaml", "--duration", "3s", "--print", "5s", "--state-dir", "s",
                  "--socket", "c.sock", "--panel-port", "0"]):
        read = parse_arguments(argv)  # (read without argparse: gateway.run_cli.parse_run)
        assert read is not None and vars(read) == vars(build_parser().parse_args(argv))
    for argv in (["run"], ["run", "x.yaml", "--duration", "soon"], ["run", "x.yaml", "-x"],
                 ["run", "x.yaml", "extra"], ["run", "--help"]):
        outcomes = []
        for parse in (parse_arguments, build_parser().parse_args):
            with pytest.raises(SystemExit) as stopped:
                parse(argv)
            outcomes.append((stopped.value.code, capsys.readouterr()))
        assert outcomes[0] == outcomes[1], argv
