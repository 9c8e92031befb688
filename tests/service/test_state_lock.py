"""The state directory's lock (gateway.service.instance): it names its holder, is free again
once released, and is not inherited by child processes. (`roomwarden run` with it:
test_one_instance.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.service.instance import LOCK_NAME, StateDirInUse, claim, lock_state_dir


def test_the_lock_names_its_holder_and_is_free_again_once_released(tmp_path: Path) -> None:
    state = tmp_path / "state"
    held = claim(state, tmp_path / "control.sock")
    try:
        with pytest.raises(StateDirInUse) as refused:
            lock_state_dir(state)  # another open of the lock file: refused like a process
        assert f"PID {os.getpid()}" in str(refused.value)
        assert str(state) in str(refused.value)
    finally:
        held.release()
    with lock_state_dir(state):  # free again
        pass


def test_the_lock_is_not_handed_to_child_processes(tmp_path: Path) -> None:
    """The config check runs in a child process (gateway.isolated_check): were the lock's
    descriptor inherited, a child outliving its gateway would keep the directory locked."""
    state = tmp_path / "state"
    probe = ("import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n")
    with lock_state_dir(state):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                 close_fds=False)
    try:
        took = subprocess.run([sys.executable, "-c", probe, str(state / LOCK_NAME)],
                              capture_output=True, text=True, timeout=30)
        assert took.returncode == 0, took.stderr
    finally:
        child.kill()
        child.wait(10)
