"""A rolled-back candidate is let go: the gateway keeps no reference to its safety core (the
config audit saw 1.27 GB still held after rolling back a 100,000-point candidate)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from tests.apply.conftest import Running, ask, device, edit_config, running, until

__all__ = ["running"]  # fixture


async def test_a_rolled_back_candidate_core_is_released(running: Running,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    gw = running.service.gateway
    original = gw.core

    def wrong_unit(data: dict[str, Any]) -> None:
        device(data, "th-tx-a03")["unit"] = 99  # nothing answers there: the trial fails

    seen: list[weakref.ref[Any]] = []
    build = type(gw).reconfigure

    async def watched(self: Any, *args: Any, **kwargs: Any) -> None:
        await build(self, *args, **kwargs)
        seen.append(weakref.ref(self.core))

    monkeypatch.setattr(type(gw), "reconfigure", watched)
    answers = await ask(running.control, {"op": "apply", "author": "bob",
                                          "config": edit_config(running.text, wrong_unit)})
    monkeypatch.undo()
    assert answers[-1]["result"]["state"] == "rolled_back"
    candidate = seen[0]
    assert gw.core is not original and gw.loaded.config == original.loaded.config
    gc.collect()
    assert candidate() is None, "the failed candidate's safety core is still referenced"
    await until(running.all_online, 20, "every device online again after the rollback")
