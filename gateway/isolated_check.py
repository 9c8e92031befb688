"""Check a gateway config in a child process: the running gateway gets the result, not the work.

`load_checked_config` reads YAML, builds pydantic's validators of the config, its profiles and
the rule packs, and validates: at a 2,000-point site 4.7 MiB more RSS in the process that does
it (the validators, 2.3 MiB of glibc's heap; the pages of pydantic-core and the YAML parser it
runs, 2 MiB) that it keeps for good — for a config checked once at boot and at each apply.
`check_apart` runs it in `python -m gateway.isolated_check` and takes back the checked config
(0.6 MiB for the same site), so a gateway never validates a config itself (issue 15).
It also keeps a flashed file's parsing out of the process that drives the alarms: the child
has a time limit (`TIMEOUT`) and an address-space limit (`MEMORY_LIMIT`), and a check that
hangs, crashes or runs out of memory is an error the caller reports, not the gateway's.

The child answers on stdout with a pickle of `("ok", LoadedConfig)` or `("errors",
[ConfigError, …])` (at most `MAX_ANSWER` bytes). Unpickling runs code the pickle names, so a
pickle is only safe from a trusted writer: this one is our own code in a process we started,
writing objects it built (YAML content reaches the pickle only as the strings and numbers of
validated models). The gateway unpickles with `_pickle.loads` — what `pickle.loads` is — so it
never holds `pickle`'s pure-Python pickler beside it (0.18 MiB, issue 15). If the child cannot
be started at all (no memory, no processes left), the check runs here, as before: a gateway
must still boot."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.config.errors import ConfigError, ConfigErrors
from gateway.config.loaded import LoadedConfig

try:  # the C unpickler `pickle.loads` is, without pickle.py's pure-Python classes (issue 15)
    from _pickle import loads as unpickle
except ImportError:  # an interpreter without it
    from pickle import loads as unpickle

log = logging.getLogger("roomwarden.config")

TIMEOUT = 120.0
"""Seconds a check may take (a 2,000-point site takes 0.5 s on the development machine)."""
MEMORY_LIMIT = 1024 * 2**20
"""The child's address space (RLIMIT_AS): a 2,000-point site peaks near 60 MiB of RSS."""
MAX_ANSWER = 64 * 2**20
"""Bytes of answer read at most (a 2,000-point site's is 45 KB)."""


NOT_FOR_THE_CHECK = frozenset({"PYTHONOPTIMIZE", "MALLOC_MMAP_THRESHOLD_",
                               "MALLOC_TRIM_THRESHOLD_"})
"""What the unit gives the gateway and not its config check (`child_environment`)."""


def child_environment() -> dict[str, str]:
    """The check's environment: the gateway's, less NOT_FOR_THE_CHECK. The unit runs the
    gateway with docstrings and asserts stripped (systemd/roomwarden.service: 2 MiB less RSS)
    and glibc's thresholds fixed for a long run (gateway.heap); the check runs the config's
    validators exactly as `roomwarden check` does, on glibc's own heap settings."""
    return {key: value for key, value in os.environ.items() if key not in NOT_FOR_THE_CHECK}


def check_apart(path: Path, *, base_dir: Path | None = None, name: str | None = None,
                rules_dir: Path | None = None, profiles_from: Path | None = None,
                timeout: float = TIMEOUT, python: str = sys.executable) -> LoadedConfig:
    """`load_checked_config(path, …)` run by a child process; raises ConfigErrors as it would,
    and ConfigErrors naming the file if the child fails, times out or answers nonsense."""
    request = json.dumps({"path": str(path), "base_dir": _opt(base_dir), "name": name,
                          "rules_dir": _opt(rules_dir), "profiles_from": _opt(profiles_from)})
    try:
        child = subprocess.Popen([python, "-m", "gateway.isolated_check", request],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=child_environment())
    except OSError as exc:
        log.warning("event=config_check_in_process reason=%r", str(exc))
        from gateway.rules.config import load_checked_config

        return load_checked_config(path, base_dir=base_dir, name=name, rules_dir=rules_dir,
                                   profiles_from=profiles_from)
    try:
        answer, errors = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise _failed(name or str(path), f"not done within {timeout:g} s") from None
    said = errors.decode(errors="replace").strip()
    if said:  # a warning, or the traceback of a failure: the gateway's log has it
        log.warning("event=config_check_said file=%s text=%r", name or path, said[-4000:])
    if child.returncode != 0:
        last = said.splitlines()[-1:] or ["no message"]
        raise _failed(name or str(path), f"exit status {child.returncode}: {last[0][:300]}")
    if len(answer) > MAX_ANSWER:
        raise _failed(name or str(path), f"an answer of {len(answer)} bytes")
    try:
        kind, result = unpickle(answer)
    except Exception as exc:  # junk on stdout: whatever unpickling raises
        raise _failed(name or str(path), f"an unreadable answer ({exc!r})") from None
    if kind == "ok" and isinstance(result, LoadedConfig):
        return result
    if kind == "errors" and isinstance(result, list) and all(
            isinstance(e, ConfigError) for e in result):
        raise ConfigErrors(result)
    raise _failed(name or str(path), f"an answer of the wrong kind ({kind!r})")


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _failed(name: str, what: str) -> ConfigErrors:
    return ConfigErrors([ConfigError(name, (), f"the config check failed: {what}")])


def _child(request: dict[str, Any]) -> tuple[str, object]:
    from gateway.rules.config import load_checked_config

    def path(key: str) -> Path | None:
        value = request.get(key)
        return None if value is None else Path(value)

    try:
        return "ok", load_checked_config(Path(request["path"]), base_dir=path("base_dir"),
                                         name=request.get("name"), rules_dir=path("rules_dir"),
                                         profiles_from=path("profiles_from"))
    except ConfigErrors as exc:
        return "errors", exc.errors


def main(argv: list[str]) -> int:
    import pickle
    import resource

    try:  # (glibc makes it prlimit64, which the unit's system-call filter allows)
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (OSError, ValueError) as exc:  # refused: the check runs, within its time limit only
        print(f"event=config_check_unlimited reason={exc!r}", file=sys.stderr)
    answer = pickle.dumps(_child(json.loads(argv[0])), protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.write(answer)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
