"""`python -m gateway.dashboards` is a real command line: `--help` prints its usage and writes
nothing (it took `--help` for the output folder and wrote 8 JSON files into `./--help/`), an
unknown option is an error, DIR and `--check` work as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.dashboards.__main__ import main, rendered

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.process
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_writes_nothing(tmp_path: Path, flag: str) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.dashboards", flag], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m gateway.dashboards"), result.stdout
    assert "DIR" in result.stdout and "--check" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no `--help` folder, no JSON


def test_an_unknown_option_is_an_error_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["--out", "x"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["a", "b"])  # one directory at most
    assert list(tmp_path.iterdir()) == []


def test_dir_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert main(["--check", str(out)]) == 1  # nothing there yet
    assert not out.exists()
    assert main([str(out)]) == 0
    assert sorted(out.rglob("*.json")) == sorted(rendered(out))
    assert main([str(out), "--check"]) == 0  # options in either order
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0  # the default: ./dashboards
    assert sorted((tmp_path / "dashboards").rglob("*.json")) == sorted(
        tmp_path / p for p in rendered(Path("dashboards")))
