"""`roomwarden check`: valid configs pass; each broken config fails with the right message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.check_all import check_config
from gateway.config.loader import ConfigErrors, load_gateway_config
from tests.shipped import FIRMWARE_CONFIGS

DATA = Path(__file__).resolve().parents[1] / "data"
BROKEN = sorted((DATA / "broken").glob("*.yaml"))


def expectations(path: Path) -> list[str]:
    return [line.removeprefix("# expect:").strip()
            for line in path.read_text().splitlines() if line.startswith("# expect:")]


def test_valid_config_loads_with_its_profiles() -> None:
    loaded = load_gateway_config(DATA / "configs" / "valid.yaml")
    assert {d.id for d in loaded.config.devices} == {"th1", "th2", "ups1"}
    assert loaded.config.buses[0].timeout == 0.5
    assert set(loaded.profiles) == {"test_th", "test_q1"}


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_config_fails_with_file_path_and_reason(path: Path) -> None:
    wanted = expectations(path)
    assert wanted, f"{path} has no '# expect:' line"
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(path)
    messages = [str(e) for e in caught.value.errors]
    for expected in wanted:
        assert any(expected in m for m in messages), f"{expected!r} not in {messages}"
    for error in caught.value.errors:
        assert error.file.endswith(".yaml")
        if error.path:
            assert error.line is not None, f"no line for {error}"


def test_error_line_points_at_the_offending_entry() -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(DATA / "broken" / "unit_collision.yaml")
    [error] = caught.value.errors
    text = (DATA / "broken" / "unit_collision.yaml").read_text().splitlines()
    assert error.line is not None
    assert "th2" in text[error.line - 1]


def test_cli_check_exit_codes_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(DATA / "configs" / "valid.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "3 devices" in out
    assert main(["check", str(DATA / "configs" / "valid.yaml"),
                 str(DATA / "broken" / "missing_bus.yaml")]) == 1
    out = capsys.readouterr().out
    # issue 14: devices are named by id
    assert "FAIL" in out and "missing_bus.yaml:" in out and "devices[th1].bus" in out


def test_cli_check_refuses_a_cycle_of_interlocks(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The output chain audit (F7): interlocks that chain back to where they start have no
    order that decides them; `roomwarden check` names the file, line, lock and the cycle. Two
    outputs locked against each other are one cycle, reported once; a chain is not one."""
    assert main(["check", str(DATA / "broken" / "interlock_cycle.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "interlock_cycle.yaml:18: interlocks[1]: interlocks form a " \
        "cycle (fan is held off while hvac is on; hvac is held off while panel is on; " \
        "panel is held off while fan is on)" in out
    text = (DATA / "broken" / "interlock_cycle.yaml").read_text()
    for name, locks, problem in (
            ("pair", "  - {output: fan, while_on: hvac}\n  - {output: hvac, while_on: fan}\n",
             "interlocks[0]: interlocks form a cycle (fan is held off while hvac is on; "
             "hvac is held off while fan is on)"),
            ("chain", "  - {output: panel, while_on: hvac}\n  - {output: hvac, while_on: fan}\n"
                      "  - {output: siren, while_on: fan}\n", None)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text.split("interlocks:")[0]
                        + "interlocks:\n" + locks)
        assert main(["check", str(path)]) == (1 if problem else 0), name
        out = capsys.readouterr().out
        assert (problem in out and out.count("form a cycle") == 1) if problem else "ok" in out


def test_cli_check_reports_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "/nonexistent/site.yaml"]) == 1
    assert "cannot read" in capsys.readouterr().out


def test_cli_check_refuses_files_it_cannot_read_whole_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The config audit: a named pipe made `check` hang, /dev/zero read until memory ran out,
    a symlink loop and an integer of 5,000 digits ended in a traceback. Each is now a clear
    error in one line, at once."""
    fifo, loop_a, loop_b = tmp_path / "site.fifo", tmp_path / "a.yaml", tmp_path / "b.yaml"
    os.mkfifo(fifo)
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    digits = tmp_path / "digits.yaml"
    digits.write_text("gateway: {id: gw, site: s}\nx: " + "9" * 5000 + "\n")
    expected = {fifo: "is a named pipe, not a regular file",
                Path("/dev/zero"): "is a device, not a regular file",
                loop_a: "cannot read: Too many levels of symbolic links",
                digits: "refused: Exceeds the limit (4300 digits)"}
    for path, reason in expected.items():
        assert main(["check", str(path)]) == 1
        out = capsys.readouterr().out
        assert reason in out and "Traceback" not in out, out


def test_a_site_of_more_points_than_a_gateway_polls_is_refused(tmp_path: Path) -> None:
    """The config audit: 50 devices of a 2,000-point profile (an 8.7 KB config within every
    YAML limit) passed check, and applying it took the gateway to 1.28 GB. 10 such devices
    (the benchmark's site) load; 11 are past MAX_SITE_POINTS."""
    import yaml

    from gateway.config.crosscheck import MAX_SITE_POINTS
    from tests.bench.bench_process import Load, holding_profile, site

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "bench_hr2000.yaml").write_text(yaml.safe_dump(holding_profile(2000)))
    for devices, ok in ((10, True), (11, False)):
        path = tmp_path / f"site{devices}.yaml"
        path.write_text(yaml.safe_dump(site(Load("x", "x", devices, 2000, "1s"), profiles)))
        if ok:
            assert len(load_gateway_config(path).config.devices) == devices
            continue
        with pytest.raises(ConfigErrors) as caught:
            load_gateway_config(path)
        assert (f"devices: the enabled devices have 22000 points in all; one gateway polls at "
                f"most {MAX_SITE_POINTS}") in str(caught.value)


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "devices" in schema["properties"]
    assert main(["schema", "--profile"]) == 0
    profile_schema = json.loads(capsys.readouterr().out)
    assert profile_schema["discriminator"]["propertyName"] == "kind"


def test_a_file_of_many_unknown_keys_is_checked_with_its_schema_walked_once(
        tmp_path: Path) -> None:
    """The schema's keys were collected again for every unknown key's 'did you mean' (~1.7 ms
    each: a file of 49,000 took `roomwarden check` 83 s, and the gateway's own check in its
    child process times out at 120 s — the config audit). They are collected once, and the
    first MAX_SUGGESTIONS errors get a suggestion."""
    from gateway.config import check_all

    path = tmp_path / "many.yaml"
    path.write_text(FIRMWARE_CONFIGS.joinpath("telecom_equipment_room.yaml").read_text()
                    + "".join(f"devices{n}: 1\n" for n in range(150)))
    check_all.known_keys.cache_clear()
    errors = [str(e) for e in check_config(path).errors]
    assert len(errors) == 150
    assert check_all.known_keys.cache_info().misses == 1
    suggested = [e for e in errors if e.endswith("did you mean 'devices'?")]
    assert len(suggested) == check_all.MAX_SUGGESTIONS == 100


def test_a_misspelt_time_zone_is_refused(tmp_path: Path) -> None:
    """`Asia/Shangai` was taken: `status` then showed UTC and the panel the misspelt name."""
    text = FIRMWARE_CONFIGS.joinpath("telecom_equipment_room.yaml").read_text()
    assert "  timezone: Asia/Shanghai\n" in text
    path = tmp_path / "tz.yaml"
    path.write_text(text.replace("  timezone: Asia/Shanghai\n", "  timezone: Asia/Shangai\n"))
    [error] = [str(e) for e in check_config(path).errors]
    assert "gateway.timezone: 'Asia/Shangai' is not a time zone" in error
