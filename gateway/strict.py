"""The one strict pydantic base: unknown keys are errors and models are immutable. Every input
the code parses (config files, wire messages, ingest settings, simulator commands) derives from
it; a family adds what it needs on top (the config models their docstrings as descriptions, the
wire contract strict types and no NaN). The health and status reports are plain dataclasses the
gateway writes itself (issue 15); their reader checks them with `STRICT_DATA`.
Config sections written as plain dataclasses (gateway.config.section) get the same `extra`
from a dict of their own and are immutable by being frozen.

Schemas are built when a model is first used (`defer_build`), not at import (issue 15): a
process builds the validators of what it validates, not of every model its imports define —
`roomwarden run` without an uplink never validates a wire message, `check` never a command.
So a field's default sub-model is `Section.model_construct()`, not `Section()`: an instance
made at import builds its class's validator then (12 config sections did, kept by every
gateway although it validates only `GatewayConfig`, whose own validator holds theirs);
tests/config/test_lean_imports.py checks each such default equals `Section()`.

No pydantic plugins: pydantic looks for them when it builds its first validator, through
`pydantic.plugin._loader`, which imports `importlib.metadata` (with `email`, `zipfile`, `csv`:
2 MiB of every gateway process) and reads the metadata of every installed distribution. The
gateway uses none, so that module is replaced, before any validator is built, by one that
finds none (`NO_PLUGINS`; its `get_plugins` is the only name pydantic takes from it). If
pydantic had already loaded the real one (another library built a model first), it stays.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

PLUGIN_LOADER = "pydantic.plugin._loader"


def _no_plugins() -> Iterable[Any]:
    return ()


NO_PLUGINS = types.ModuleType(PLUGIN_LOADER, "pydantic's plugin loader, finding no plugins "
                                            "(gateway.strict)")
NO_PLUGINS.get_plugins = _no_plugins  # type: ignore[attr-defined]
sys.modules.setdefault(PLUGIN_LOADER, NO_PLUGINS)


STRICT_DATA = ConfigDict(extra="forbid", frozen=True)
"""Unknown keys are errors, instances immutable: StrictModel's config, and that of the plain
frozen dataclasses a reader validates with pydantic (`with_config(STRICT_DATA)`): the reports
the gateway writes without a model (gateway.ops.health_report, issue 15)."""


class StrictModel(BaseModel):
    model_config = ConfigDict(**STRICT_DATA, defer_build=True)
