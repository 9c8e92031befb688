"""Run by test_store.py: stage and commit (or discard) configs in a loop until killed.

argv: STORE_DIR. Prints `ready`, then `staged N` / `committed N` / `discarded N` after each
step returns."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from gateway.flashing.store import ConfigMeta, ConfigStore


def make_text(version: int) -> str:
    """A deterministic, sizeable config text for `version` (first line names it)."""
    filler = hashlib.sha256(str(version).encode()).hexdigest()
    return f"# version: {version}\n" + "".join(
        f"# {filler} line {i} of version {version}\n" for i in range(3000))


def main() -> None:
    store = ConfigStore(Path(sys.argv[1]))
    meta = store.active_meta()
    version = max(meta.version if meta else 0, store.highest_version())
    print("ready", flush=True)
    while True:
        version += 1
        text = make_text(version)
        store.stage(text, ConfigMeta(version=version, sha256=hashlib.sha256(
            text.encode()).hexdigest(), source="local", author="crash-test"))
        print(f"staged {version}", flush=True)
        if version % 4 == 0:
            store.discard()
            print(f"discarded {version}", flush=True)
        else:
            store.commit()
            print(f"committed {version}", flush=True)


if __name__ == "__main__":
    main()
