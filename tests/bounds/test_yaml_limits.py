"""Every YAML input is bounded: alias bombs, deep nesting, recursive aliases, huge lists and
oversized profiles are refused with `file:line: reason` in bounded time and memory — by the
real `roomwarden check` process for each kind of file it reads (config, profile, rule pack,
drill), and by the loader the ingest config and flashed configs go through."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import yamlsafe
from gateway.config.loader import ConfigErrors, load_gateway_config, load_profile, parse_yaml
from gateway.config.profile import MAX_PROFILE_POINTS, ModbusProfile
from gateway.config.yamlsafe import MAX_DEPTH, MAX_NODES, YamlLimits
from gateway.ingest.settings import load_settings

# 9 levels of 9 aliases each: 9**9 (387 million) strings once expanded; 342 bytes.
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi",
                                                                 strict=True))
DEEP_FLOW = "x: " + "[" * 10_000 + "]" * 10_000 + "\n"
DEEP_BLOCK = "x:\n  " + "- " * 10_000 + "leaf\n"
RECURSIVE = "x: &x [a, &y [b, *y]]\n"

MEASURE = """
import json, resource, subprocess, sys, time
start = time.monotonic()
proc = subprocess.run([sys.executable, "-m", "gateway", "check", *sys.argv[1:]],
                      capture_output=True, text=True, timeout=120)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": time.monotonic() - start, "rc": proc.returncode,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
                  "out": proc.stdout, "err": proc.stderr}))
"""


def check_process(path: Path) -> dict[str, object]:
    """`roomwarden check PATH` in a fresh process, with its wall time and peak RSS (measured by
    a wrapper process of its own, so no other child of the test run counts)."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True,
                          text=True, timeout=180, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def place(tmp_path: Path, kind: str, text: str) -> Path:
    """Where `roomwarden check` treats a file as a config, profile, rule pack or drill."""
    where = {"config": "site/bomb.yaml", "profile": "hardware/profiles/bomb.yaml",
             "pack": "edge_rules/bomb.yaml", "drill": "edge_rules/drills/bomb.yaml"}[kind]
    path = tmp_path / where
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("bomb", "reason"), [
    (BILLION_LAUGHS, f"more than {MAX_NODES} nodes"),
    (DEEP_FLOW, f"nested deeper than {MAX_DEPTH} levels"),
])
@pytest.mark.parametrize("kind", ["config", "profile", "pack", "drill"])
def test_check_refuses_bombs_fast_and_small(tmp_path: Path, kind: str, bomb: str,
                                            reason: str) -> None:
    path = place(tmp_path, kind, bomb)
    run = check_process(path)
    out = str(run["out"])
    assert run["rc"] == 1, run
    assert "Traceback" not in out + str(run["err"]), run["err"]
    assert f"{path}:" in out and f"refused: {reason}" in out, out
    # before: 6.19 GB and a timeout (alias bomb), an unhandled RecursionError (nesting)
    assert float(str(run["rss_mb"])) < 100, run
    # CPU time, Python's start-up and imports included (about 0.8 s for a small valid file);
    # wall time only loosely: the machine may be shared
    assert float(str(run["cpu_s"])) < 5, run
    assert float(str(run["seconds"])) < 60, run


@pytest.mark.parametrize(("text", "reason", "line"), [
    (BILLION_LAUGHS, f"more than {MAX_NODES} nodes", None),
    (DEEP_FLOW, f"nested deeper than {MAX_DEPTH} levels", 1),
    (DEEP_BLOCK, f"nested deeper than {MAX_DEPTH} levels", 2),
    (RECURSIVE, "alias *y refers to a node that contains it", 1),
])
@pytest.mark.parametrize("loader", ["libyaml", "pure"])
def test_refusal_takes_under_a_second_and_100_mb(text: str, reason: str, line: int | None,
                                                 loader: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if loader == "pure":  # what a PyYAML without libyaml uses
        monkeypatch.setattr(yamlsafe, "LimitedLoader", yamlsafe.PureLimitedLoader)
    cpu = time.process_time()
    with pytest.raises(ConfigErrors) as caught:
        parse_yaml(text, "bomb.yaml")
    spent = time.process_time() - cpu
    tracemalloc.start()  # again, for the memory (tracing slows it down several times)
    try:
        with pytest.raises(ConfigErrors):
            parse_yaml(text, "bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [error] = caught.value.errors
    assert reason in error.reason and error.reason.startswith("refused: ")
    assert error.line is not None and (line is None or error.line == line)
    assert str(error).startswith(f"bomb.yaml:{error.line}: ")
    assert spent < 1.0, spent
    assert peak < 100 * 2**20, peak


def test_the_nodes_an_alias_repeats_are_counted() -> None:
    limits = YamlLimits(max_nodes=100)
    parse_yaml("a: &a [1, 2, 3, 4, 5, 6, 7, 8]\nb: [*a, *a, *a, *a, *a, *a, *a, *a]\n", "ok",
               limits)  # 9 + 8 × 9 + keys: under 100
    with pytest.raises(ConfigErrors, match="more than 100 nodes"):
        parse_yaml("a: &a [1, 2, 3, 4, 5, 6, 7, 8]\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a,"
                   " *a, *a]\n", "x", limits)


def test_long_lists_and_mappings_are_cut_off_at_the_limit() -> None:
    limits = YamlLimits(max_items=100)
    parse_yaml("b: [" + "1, " * 100 + "]\n", "ok", limits)
    with pytest.raises(ConfigErrors) as caught:
        parse_yaml("a: 1\nb: [" + "1, " * 101 + "]\n", "list.yaml", limits)
    assert str(caught.value) == ("list.yaml:2: (top): refused: a list or mapping with more "
                                 "than 100 entries")
    with pytest.raises(ConfigErrors, match="more than 100 entries"):
        parse_yaml("".join(f"k{i}: {i}\n" for i in range(101)), "map.yaml", limits)


def test_ordinary_anchors_still_work() -> None:
    data, lines = parse_yaml("base: &b {offset: 1}\nuse: *b\nmerged: {<<: *b, scale: 2}\n",
                             "ok.yaml")
    assert data == {"base": {"offset": 1}, "use": {"offset": 1},
                    "merged": {"offset": 1, "scale": 2}}
    assert lines.line_of(("use", "offset")) == 1  # a repeat: the anchor's line


def test_a_profile_with_too_many_points_is_refused_before_it_is_validated(
        tmp_path: Path) -> None:
    """60,000 points took 27 s and 847 MB to check; the list is now cut off at the limit."""
    points = "".join(f"  - {{name: p{i}, register: holding, address: {i}, type: uint16}}\n"
                     for i in range(60_000))
    path = tmp_path / "huge.yaml"
    path.write_text("kind: modbus\nid: huge\nmanufacturer: x\nmodel: y\ngeneric: true\n"
                    "points:\n" + points, encoding="utf-8")
    cpu = time.process_time()
    with pytest.raises(ConfigErrors) as caught:
        load_profile(path)
    assert time.process_time() - cpu < 5.0
    [error] = caught.value.errors
    assert f"`points` has more than {MAX_PROFILE_POINTS} points" in error.reason
    assert error.line == 7 + MAX_PROFILE_POINTS  # the first point past the limit

    path.write_text("kind: modbus\nid: huge\nmanufacturer: x\nmodel: y\ngeneric: true\n"
                    "points:\n" + "".join(points.splitlines(keepends=True)[:MAX_PROFILE_POINTS]),
                    encoding="utf-8")
    profile = load_profile(path)
    assert isinstance(profile, ModbusProfile)
    assert len(profile.points) == MAX_PROFILE_POINTS  # the limit itself is fine


def test_the_ingest_config_and_flashed_configs_use_the_same_reader(tmp_path: Path) -> None:
    central = tmp_path / "central.yaml"
    central.write_text(BILLION_LAUGHS, encoding="utf-8")
    with pytest.raises(ConfigErrors, match="refused: more than"):
        load_settings(central)
    staged = tmp_path / "state" / "config.yaml"  # what ConfigStore.stage writes and loads
    staged.parent.mkdir()
    staged.write_text(DEEP_BLOCK, encoding="utf-8")
    with pytest.raises(ConfigErrors, match="nested deeper"):
        load_gateway_config(staged, name="flashed config")


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]{}:,-&*ab \n'\"!|>?#")), max_size=300))
def test_any_text_gives_data_or_config_errors(text: str) -> None:
    """Whatever the text, the reader returns data or raises ConfigErrors — nothing else — with
    libyaml's events or PyYAML's (the two parsers differ on a few corner cases, such as what
    `>#` or a lone `!` mean, so their answers are not compared)."""
    for loader in (yamlsafe.LimitedLoader, yamlsafe.PureLimitedLoader):
        original, yamlsafe.LimitedLoader = yamlsafe.LimitedLoader, loader
        try:
            parse_yaml(text, "fuzz.yaml")
        except ConfigErrors as exc:
            assert exc.errors and all(str(e).startswith("fuzz.yaml") for e in exc.errors)
        finally:
            yamlsafe.LimitedLoader = original


def test_a_generated_file_at_the_limits_still_loads() -> None:
    deep: object = "leaf"
    for _ in range(MAX_DEPTH - 2):  # the document's mapping and the key's value count too
        deep = [deep]
    data, _lines = parse_yaml(yaml.safe_dump({"x": deep}), "deep.yaml")
    assert data["x"] == deep
