"""The one strict pydantic base: unknown keys are errors and models are immutable. Every input
the code parses (config files, wire messages, ingest settings, simulator commands) and every
report it builds (health, status) derives from it; a family adds what it needs on top (the
config models their docstrings as descriptions, the wire contract strict types and no NaN)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
