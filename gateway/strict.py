"""The one strict pydantic base: unknown keys are errors and models are immutable. Every input
the code parses (config files, wire messages, ingest settings, simulator commands) and every
report it builds (health, status) derives from it; a family adds what it needs on top (the
config models their docstrings as descriptions, the wire contract strict types and no NaN).

Schemas are built when a model is first used (`defer_build`), not at import (issue 15): a
process builds the validators of what it validates, not of every model its imports define —
`roomwarden run` without an uplink never validates a wire message, `check` never a command."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
