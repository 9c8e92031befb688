"""Configuration pushed to a gateway (`config/set`) and its retained status."""

import hashlib
from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.contract.base import (
    Actor,
    Id,
    KeyId,
    Ns,
    RequestId,
    Sha256,
    Signature,
    StatusCode,
    Upstream,
    WireModel,
)
from gateway.contract.vocab import MAX_CONFIG_BYTES

# ---------------------------------------------------------------------------------- config

ConfigVersion = Annotated[int, Field(ge=0, lt=2**63)]
"""A config's version: 0 is the factory config, flashed configs count up from 1."""
MAX_STATUS_ERROR = 4000


def _digest_mismatch() -> PydanticCustomError:
    return PydanticCustomError("digest_mismatch", "sha256 does not match the config")


class ConfigSet(WireModel):
    """A signed config to flash (gateway.flashing.envelope signs and verifies it).

    The Ed25519 `signature` (base64) covers every other field: see
    `gateway.flashing.envelope.signing_bytes`. `sha256` is of `config` in UTF-8 and is checked
    on decode; the signature, the key and the version by the gateway."""

    v: Literal[1] = 1
    id: RequestId
    """Chosen by the sender; every ConfigStatus about this envelope echoes it."""
    ts: Ns
    gateway: Id
    """The gateway the config is for; any other gateway refuses it."""
    version: Annotated[int, Field(ge=1, lt=2**63)]
    """Strictly increasing per gateway: a gateway refuses a version it has already accepted
    or passed (unless `force`)."""
    sha256: Sha256
    author: Actor
    force: bool = False
    """Done on purpose: allow a version at or below the highest accepted (a signed downgrade)
    or more than gateway.flashing.seen.MAX_VERSION_STEP above it, and a config that moves
    the gateway to another site or topic root or no longer trusts the signing key."""
    config: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONFIG_BYTES)]
    """The YAML text, at most MAX_CONFIG_BYTES in UTF-8."""
    key_id: KeyId | None = None
    signature: Signature | None = None

    @field_validator("v", mode="before")
    @classmethod
    def _v_is_an_integer(cls, value: object) -> object:
        if type(value) is not int:  # Literal[1] alone takes `true` and 1.0 (both == 1)
            raise ValueError("v must be the integer 1")
        return value

    @model_validator(mode="after")
    def _digest(self) -> Self:
        data = self.config.encode()  # a lone surrogate raises UnicodeEncodeError: invalid
        if len(data) > MAX_CONFIG_BYTES:
            raise ValueError(f"config is {len(data)} bytes in UTF-8; the limit is "
                             f"{MAX_CONFIG_BYTES}")
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise _digest_mismatch()
        return self


class ConfigStatus(Upstream):
    """The gateway's answer to a ConfigSet (retained: the last one shows the running config).

    `state`: received → staged → applying → applied, or rejected (refused before staging:
    `code` says why, e.g. `bad_signature`, `replayed`, `downgrade`, `schema`) or rolled_back
    (applied but unhealthy, or interrupted: the last-known-good config runs again)."""

    id: RequestId | None = None
    """The ConfigSet this answers, or None for the running config at boot."""
    ts: Ns
    state: Literal["received", "rejected", "staged", "applying", "applied", "rolled_back"]
    code: StatusCode | None = None
    """A short machine-readable reason for rejected / rolled_back."""
    version: ConfigVersion | None = None
    """The version of the ConfigSet this answers."""
    sha256: Sha256 | None = None
    error: Annotated[str, StringConstraints(max_length=MAX_STATUS_ERROR)] | None = None
    """What went wrong, for people (e.g. every error of an invalid config, one a line)."""
    active_version: ConfigVersion | None = None
    """The version running now (after this step)."""
    active_sha256: Sha256 | None = None
    highest_accepted: ConfigVersion | None = None
    """The highest version this gateway has ever accepted: the next flash is numbered one
    above it, and one more than gateway.flashing.seen.MAX_VERSION_STEP above it is refused
    (`version_jump`) unless forced. It can be above `active_version` (a rolled-back or
    forced-down version stays used up)."""
