"""A config checked by a child process (gateway.isolated_check): the same result as a check
in the process, the same errors, and a child that fails, hangs or answers nonsense is an error
naming the file — never a gateway that stops or trusts a wrong answer."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.config.loader import ConfigErrors
from gateway.isolated_check import MEMORY_LIMIT, check_apart
from gateway.rules.config import load_checked_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "firmware_configs").glob("*.yaml"))


@pytest.mark.parametrize("site", SHIPPED, ids=lambda p: p.stem)
def test_the_child_gives_what_a_check_here_gives(site: Path) -> None:
    apart = check_apart(site)
    assert apart == load_checked_config(site)
    assert apart.packs is not None and set(apart.packs) >= {"fire", "power"}


def test_errors_come_back_as_a_check_here_raises_them(tmp_path: Path) -> None:
    text = (REPO / "firmware_configs" / "telecom_equipment_room.yaml").read_text()
    bad = tmp_path / "site.yaml"
    bad.write_text(text.replace("poll_interval: 1s", "poll_interval: soon", 1)
                   + "\nunknown_section: 1\n")
    with pytest.raises(ConfigErrors) as here:
        load_checked_config(bad, base_dir=REPO / "firmware_configs")
    with pytest.raises(ConfigErrors) as apart:
        check_apart(bad, base_dir=REPO / "firmware_configs", name="config v7")
    assert len(apart.value.errors) == len(here.value.errors) >= 2
    assert [(e.path, e.reason, e.line) for e in apart.value.errors] == [
        (e.path, e.reason, e.line) for e in here.value.errors]
    assert all(e.file == "config v7" for e in apart.value.errors)
    assert "unknown_section" in str(apart.value)


def fake_checker(tmp_path: Path, body: str) -> str:
    """An executable that stands where the Python interpreter would: it runs `body`."""
    script = tmp_path / "checker.py"
    script.write_text(textwrap.dedent(body))
    launcher = tmp_path / "python"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {script}\n")
    launcher.chmod(0o755)
    return str(launcher)


def failure(tmp_path: Path, body: str, timeout: float = 60.0) -> str:
    with pytest.raises(ConfigErrors) as raised:
        check_apart(SHIPPED[0], python=fake_checker(tmp_path, body), timeout=timeout)
    (error,) = raised.value.errors
    assert error.file == str(SHIPPED[0]) and error.path == ()
    return error.reason


def test_a_child_that_fails_is_an_error_with_its_last_words(tmp_path: Path) -> None:
    reason = failure(tmp_path, "import sys; print('traceback …\\nMemoryError', file=sys.stderr);"
                               " sys.exit(3)")
    assert reason == "the config check failed: exit status 3: MemoryError"


def test_a_child_that_hangs_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    reason = failure(tmp_path, f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
    """, timeout=2.0)
    assert reason == "the config check failed: not done within 2 s"
    assert time.monotonic() - started < 30
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped


@pytest.mark.parametrize(("body", "said"), [
    ("print('hello')", "an unreadable answer"),
    ("import pickle, sys; sys.stdout.buffer.write(pickle.dumps(('ok', 42)))",
     "an answer of the wrong kind ('ok')"),
    ("import pickle, sys; sys.stdout.buffer.write(pickle.dumps(('errors', ['not one'])))",
     "an answer of the wrong kind ('errors')"),
    ("import pickle, sys; sys.stdout.buffer.write(pickle.dumps(['a', 'list', 'of', 4]))",
     "an unreadable answer"),
])
def test_an_answer_that_is_not_a_checked_config_is_refused(tmp_path: Path, body: str,
                                                            said: str) -> None:
    assert failure(tmp_path, body).startswith(f"the config check failed: {said}")


def test_a_child_that_cannot_start_leaves_the_check_to_this_process(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="roomwarden.config"):
        loaded = check_apart(SHIPPED[0], python=str(tmp_path / "no-such-python"))
    assert loaded == load_checked_config(SHIPPED[0])
    assert "event=config_check_in_process" in caplog.text


def test_the_child_runs_within_its_memory_limit(tmp_path: Path) -> None:
    request = json.dumps({"path": str(SHIPPED[0]), "base_dir": None, "name": None,
                          "rules_dir": None})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import resource, sys
            from gateway import isolated_check
            isolated_check.main([{request!r}])
            print(resource.getrlimit(resource.RLIMIT_AS)[0], file=sys.stderr)
        """)], cwd=REPO, capture_output=True, timeout=120, check=True)
    kind, loaded = pickle.loads(done.stdout)
    assert kind == "ok" and loaded == load_checked_config(SHIPPED[0])
    assert int(done.stderr.split()[-1]) == MEMORY_LIMIT


def test_a_child_not_allowed_its_limit_still_checks_within_the_one_it_has() -> None:
    """A hard limit below `MEMORY_LIMIT` already (or a refused `setrlimit`): said on stderr,
    and the check runs, within the lower limit it was given."""
    import resource

    lower = MEMORY_LIMIT - 64 * 2**20
    request = json.dumps({"path": str(SHIPPED[0]), "base_dir": None, "name": None,
                          "rules_dir": None})
    done = subprocess.run(
        [sys.executable, "-m", "gateway.isolated_check", request], cwd=REPO,
        capture_output=True, timeout=120, check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (lower, lower)))
    kind, loaded = pickle.loads(done.stdout)
    assert kind == "ok" and loaded == load_checked_config(SHIPPED[0])
    assert b"event=config_check_unlimited" in done.stderr


def test_the_gateway_runs_on_while_an_apply_is_checked(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply's check runs in its child, off the event loop: a check that takes a second
    (the real check, delayed) leaves the loop turning all along, and its errors still come
    back as the apply's refusal."""
    import asyncio

    import gateway.flashing.apply as apply_module
    from gateway.supervisor import Service

    site = REPO / "tests" / "ops" / "site.yaml"
    real = check_apart

    def slow_check(*args: object, **kwargs: object) -> object:
        time.sleep(1.0)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(apply_module, "check_apart", slow_check)

    async def main() -> tuple[int, str, str | None]:
        service = Service(site, state_dir=tmp_path / "state",
                          control_path=tmp_path / "control.sock", panel_port=0)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        text = site.read_text().replace("poll_interval: 200ms", "poll_interval: soon", 1)
        status = await service.applier.apply_text(text, author="test")
        task.cancel()
        service.gateway.core.close()
        return ticks, status.state, status.error

    ticks, state, error = asyncio.run(main())
    assert state == "rejected" and error is not None and "poll_interval" in error
    assert ticks >= 10  # 20 a second while the check took at least one
