"""The rate windows compiled with mypyc (tests/bench/bench_compiled.py) compute what the
Python modules compute, bit for bit — what a compiled build of them would have to keep
(issue 15, docs/performance.md). A random stream per window shape, with what a window meets:
a steady poll, faster polls (thinned), gaps longer than the window, samples out of order,
integers, -0.0, NaN, infinities, values too large for the running sums; every fit after every
sample, and the samples held at the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.bench_compiled import can_compile, compile_rate_windows

STREAM = """
import json, math, random, sys
sys.path.insert(0, sys.argv[1])
import gateway.rules.rate_window as module
from gateway.rules.rate_window import RateWindow
out = {"module": module.__file__, "fits": []}
for seed, (window, confidence, decimal) in enumerate(
        [(60.0, 2.0, True), (3600.0, 2.0, True), (10.0, 0.0, False), (60.0, 1.0, True)]):
    rng = random.Random(seed)
    w = RateWindow(window, 60.0, 3, None, confidence, decimal=decimal)
    t = float(2 ** 30 + 4096)
    for _ in range(3000):
        r = rng.random()
        t += 0.1 if r < 0.2 else 500.0 if r < 0.21 else -0.5 if r < 0.23 else 1.0
        k = rng.random()
        value = (float("nan") if k < 0.005 else math.inf if k < 0.01 else -0.0 if k < 0.02
                 else 1e200 if k < 0.025 else rng.randint(-5, 40) if k < 0.1
                 else round(20 + 5 * rng.random(), 2))
        w.add(t, value)
        out["fits"].append(repr(w.fit(t + 0.004)))
    out["fits"].append(repr(list(w.samples)))
print(json.dumps(out))
"""


def _stream(root: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", STREAM, str(root)], capture_output=True,
                          text=True, timeout=300, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(not can_compile(), reason="no C compiler or no Python headers for mypyc")
def test_compiled_rate_windows_fit_what_the_python_ones_fit(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    compiled = _stream(compile_rate_windows(tmp_path))
    python = _stream(root)
    assert str(compiled["module"]).endswith(".so")
    assert str(python["module"]).endswith("rate_window.py")
    assert compiled["fits"] == python["fits"]
    fits = python["fits"]
    assert isinstance(fits, list) and len(fits) == 4 * 3001
    assert sum(fit != "None" for fit in fits) > 1000  # (most samples were judged)


def test_a_shape_copy_names_every_field() -> None:
    """`Shape.__copy__` names its fields (a compiled class has no `__slots__` to walk): the
    names are the slots', and a copy equals its original but for the deadline it forgets."""
    import copy
    import math

    from gateway.rules.rate_window import _SHAPE_FIELDS, Shape

    assert set(_SHAPE_FIELDS) == set(Shape.__slots__) - {"__weakref__"}
    shape = Shape(60.0, 60.0, 5, 20.0, 2.0)
    shape.leaves, shape.due = 1.0, 61.25
    copied = copy.copy(shape)
    for name in _SHAPE_FIELDS:
        if name in ("leaves", "due"):
            assert math.isnan(getattr(copied, name))
        else:
            assert getattr(copied, name) == getattr(shape, name), name
