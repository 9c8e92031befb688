"""Every `roomwarden` command line the README and docs/ show names a real sub-command and only
options it has (DESIGN principle 11: what users copy is executed — here, parsed by the same
argparse parsers the CLI builds; `ingest` has its own)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from gateway.cli import build_parser
from gateway.ingest.cli import build_parser as build_ingest_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(?:sh|bash|console|shell)\n(.*?)```", re.S)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def _joined(block: str) -> list[tuple[int, str]]:
    """(line number in the block, text) of each command, continuation lines (`\\`) joined
    (their comments dropped)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in enumerate(block.splitlines()):
        code = line.split(" #", 1)[0].rstrip()
        if pending is not None:
            number, code = pending[0], pending[1] + " " + code.strip()
        if code.endswith("\\"):
            pending = (number, code[:-1])
            continue
        pending = None
        out.append((number, code))
    return out


def command_lines() -> list[tuple[str, list[str]]]:
    """(`file:line`, the words after `roomwarden`) of every command of a shell block."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for block in BLOCK.finditer(text):
            first = text[:block.start()].count("\n") + 2
            for number, line in _joined(block.group(1)):
                code = line.split(" #", 1)[0].strip().removeprefix("$ ")
                for part in re.split(r"\s*(?:\|\||&&|\||;)\s*", code):
                    try:
                        words = shlex.split(part)
                    except ValueError:
                        words = part.split()
                    at = next((i for i, w in enumerate(words) if Path(w).name == "roomwarden"
                               and (i == 0 or words[i - 1] not in ("-u", "--user"))), None)
                    if at is not None and words[at + 1:] and not words[at + 1].startswith("-"):
                        found.append((f"{doc.relative_to(REPO)}:{first + number}",
                                      words[at + 1:]))
    return found


def test_every_documented_command_parses() -> None:
    commands = command_lines()
    assert len(commands) >= 30, "the docs' command lines were not found"
    top = _subcommands(build_parser())
    wrong = []
    for where, words in commands:
        name, rest = words[0], words[1:]
        if name not in top:
            wrong.append(f"{where}: no sub-command {name!r}")
            continue
        parser = build_ingest_parser() if name == "ingest" else top[name]
        nested = _subcommands(parser)
        if nested and rest and not rest[0].startswith("-"):
            if rest[0] not in nested:
                wrong.append(f"{where}: no sub-command {name} {rest[0]!r}")
                continue
            parser = nested[rest[0]]
        known = _options(parser)
        wrong += [f"{where}: {name} has no option {w.split('=')[0]}" for w in rest
                  if w.startswith("--") and w.split("=")[0] not in known]
    assert wrong == []
