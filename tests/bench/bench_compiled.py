"""The rate windows compiled with mypyc against the same modules in Python (issue 15: the
structural step after the Python loops reached their floor; docs/performance.md, "Measured
again, the event loop's thread apart; the rate windows compiled, as a probe").

Copies `gateway/` into a temporary directory, compiles `gateway/rules/rate_window.py` and
`gateway/rules/rate_samples.py` there with mypyc (mypy's compiler, in the `dev` extra; it needs
a C compiler and Python's headers), then runs one microbenchmark in two fresh interpreters —
one importing the compiled copy, one the checkout: the 2,000-point benchmark's 670 one-minute
windows and 268 hour windows (tests/bench/bench_process.py's site) each taking a sample a
simulated second and fitted after it, 60 measured seconds after a warm-up that fills them. It
prints CPU µs a window a second for `add` and `fit`, each way, and the speed-up. Nothing of the
compiled copy is installed or kept: a gateway runs the Python modules.

    .venv/bin/python -m tests.bench.bench_compiled
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.common import REPO, emit_json, print_table

COMPILED = ("gateway/rules/rate_window.py", "gateway/rules/rate_samples.py")
"""The modules compiled (the rest of the copy stays Python)."""

MICRO = """
import json, random, sys, time
sys.path.insert(0, sys.argv[1])
import gateway.rules.rate_window as module
from gateway.rules.rate_window import RateWindow
out = {"module": module.__file__}
rng = random.Random(7)
for name, count, window, warmup in (("minute", 670, 60.0, 90), ("hour", 268, 3600.0, 1000)):
    windows = [RateWindow(window, 60.0, 3, None, 2.0, decimal=True) for _ in range(count)]
    base = float(2 ** 30 + 12345)
    add = fit = 0.0
    for second in range(warmup + 60):
        t = base + second
        values = [round(20 + rng.random(), 2) for _ in windows]
        began = time.process_time()
        for w, v in zip(windows, values):
            w.add(t, v)
        middle = time.process_time()
        for w in windows:
            w.fit(t + 0.005)
        if second >= warmup:
            add += middle - began
            fit += time.process_time() - middle
    out[name] = {"add_us": add / 60 / count * 1e6, "fit_us": fit / 60 / count * 1e6}
print(json.dumps(out))
"""


def can_compile() -> bool:
    """A C compiler and Python's headers are here (mypyc needs both; a machine may have one
    alone: Debian's `gcc` and `python3-dev`)."""
    include = sysconfig.get_paths().get("include", "")
    return shutil.which("cc") is not None and (Path(include) / "Python.h").is_file()


def compile_rate_windows(dest: Path) -> Path:
    """A copy of `gateway/` in `dest` with `COMPILED` compiled by mypyc; `dest` (to put on
    `sys.path`). RuntimeError with mypyc's output if it fails."""
    shutil.copytree(REPO / "gateway", dest / "gateway",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (dest / "mypy.ini").write_text("[mypy]\n")  # (not the project's: no pydantic plugin needed)
    done = subprocess.run([sys.executable, "-m", "mypyc", *COMPILED], cwd=dest,
                          capture_output=True, text=True, timeout=600, check=False)
    built = [dest / Path(path).with_suffix("").as_posix() for path in COMPILED]
    if done.returncode or not all(list(p.parent.glob(f"{p.name}.*.so")) for p in built):
        raise RuntimeError(f"mypyc failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return dest


def micro(root: Path) -> dict[str, Any]:
    """The microbenchmark's figures in a fresh interpreter importing `gateway` from `root`."""
    done = subprocess.run([sys.executable, "-c", MICRO, str(root)], capture_output=True,
                          text=True, timeout=600, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> dict[str, Any]:
    if not can_compile():
        print("Rate windows compiled: skipped — no C compiler or no Python headers here "
              "(Debian: apt-get install gcc python3-dev)")
        return {}
    with tempfile.TemporaryDirectory(prefix="roomwarden-compiled-") as tmp:
        compiled = compile_rate_windows(Path(tmp))
        python, native = micro(REPO), micro(compiled)
    if not native["module"].endswith(".so") or python["module"].endswith(".so"):
        raise SystemExit(f"not what was meant to run: {python['module']}, {native['module']}")
    rows = []
    for name, title in (("minute", "one-minute window"), ("hour", "hour window (thinned)")):
        for part in ("add_us", "fit_us"):
            a, b = python[name][part], native[name][part]
            rows.append((f"{title}: {part[:-3]} (CPU µs a window a second)",
                         f"{a:.2f} → {b:.2f}", f"{a / b:.1f}×" if b else "–"))
    print_table("Rate windows: Python → compiled with mypyc (670 one-minute and 268 hour "
                "windows, a sample a second)", rows)
    results = {"python": python, "compiled": native}
    emit_json("compiled", results)
    return results


if __name__ == "__main__":
    main()
