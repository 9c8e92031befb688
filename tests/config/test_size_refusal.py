"""A config past the 4 MiB limit is refused by its size, before a byte is read, with the
message docs/limits.md shows (the audit: the doc showed `file is N bytes; the limit is
4194304`, the tool printed `(top): file is larger than the limit of 4194304 bytes`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.yamlfile import FileTooLarge, read_bounded
from gateway.config.yamllimits import MAX_BYTES
from tests.shipped import FIRMWARE_CONFIGS, REPO

SIZE = 4_300_074
"""The 4.3 MB file of docs/limits.md's example."""


def _big_config(tmp_path: Path) -> Path:
    """The shipped telecom site padded with comment lines to exactly SIZE bytes."""
    text = (FIRMWARE_CONFIGS / "telecom_equipment_room.yaml").read_bytes()
    pad = SIZE - len(text)
    line = b"# " + b"x" * 97 + b"\n"
    body = text + line * (pad // len(line))
    body += b"#" * (SIZE - len(body) - 1) + b"\n"
    path = tmp_path / "big.yaml"
    path.write_bytes(body)
    assert path.stat().st_size == SIZE
    return path


def test_roomwarden_check_prints_what_the_doc_shows(tmp_path: Path) -> None:
    path = _big_config(tmp_path)
    done = subprocess.run([sys.executable, "-m", "gateway", "check", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done
    printed = f"{path}: (top): file is {SIZE} bytes; the limit is {MAX_BYTES} (4 MiB)"
    assert printed in done.stdout + done.stderr, done
    assert "Traceback" not in done.stdout + done.stderr
    doc = (REPO / "docs" / "limits.md").read_text()
    assert f"`file: (top): file is {SIZE} bytes; the limit is {MAX_BYTES} (4 MiB)`" in doc


def test_a_file_larger_than_its_size_said_is_still_cut_at_the_limit() -> None:
    """/proc files say 0 bytes: read up to the limit and refused past it, with the message
    docs/limits.md shows for a file that grows while it is read."""
    with pytest.raises(FileTooLarge) as caught:
        read_bounded(Path("/proc/self/maps"), 1024)
    assert str(caught.value) == "file is larger than the limit of 1024 bytes (1 KiB)"
    doc = (REPO / "docs" / "limits.md").read_text()
    assert f"`(top): file is larger than the limit of {MAX_BYTES} bytes (4 MiB)`" in doc
