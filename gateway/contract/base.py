"""The wire contract's vocabulary: version, size limits, scalar types, message kinds, the
strict model bases every message derives from, and validated construction."""

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from gateway.contract.vocab import (
    HASH,
    ID,
    NAME,
    NS_END,
    POINT_ID,
    SHA256,
    SHORT,
    TEXT_VALUE,
    ContractError,
)
from gateway.contract.vocab import MAX_BATCH_ROWS as MAX_BATCH_ROWS  # (re-exported)
from gateway.contract.vocab import REQUEST_ID_PATTERN as REQUEST_ID_PATTERN  # (re-exported)
from gateway.strict import StrictModel

Id = Annotated[str, StringConstraints(pattern=ID.anchored, max_length=ID.max_length)]
"""Site, gateway, device and room ids (the config's `Id`); safe as a topic level."""
Root = Annotated[str, StringConstraints(pattern=rf"^{ID.pattern}(?:/{ID.pattern})*$",
                                        max_length=1024)]
"""An MQTT topic root: one or more id-like levels (`roomwarden`, `acme/rw`;
`gateway.contract.channels.check_root`)."""
Name = Annotated[str, StringConstraints(pattern=NAME.anchored, max_length=NAME.max_length)]
PointId = Annotated[str, StringConstraints(pattern=POINT_ID.anchored,
                                           max_length=POINT_ID.max_length)]
"""`device.point` or `device.point.flag`."""
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
                                             max_length=64)]
Ns = Annotated[int, Field(ge=0, lt=NS_END)]
"""ns since the epoch, UTC."""
Seq = Annotated[int, Field(ge=0, lt=NS_END)]
Hash = Annotated[str, StringConstraints(pattern=HASH.anchored)]
Sha256 = Annotated[str, StringConstraints(pattern=SHA256.anchored)]
Text = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=1000)]
Short = Annotated[str, StringConstraints(max_length=SHORT.max_length)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Value = FiniteFloat | int | bool | Annotated[
    str, StringConstraints(max_length=TEXT_VALUE.max_length)] | None
"""A sample value on the wire: finite float, integer, boolean, short string or null."""
AlarmRule = Annotated[str, StringConstraints(min_length=1, max_length=128)]
AlarmSubject = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=64)]
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
"""A signing key's short fingerprint (gateway.flashing.keys.key_id)."""
Signature = Annotated[str, StringConstraints(min_length=1, max_length=256)]
"""An Ed25519 signature, base64."""
StatusCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class WireModel(StrictModel):
    """Strict types (no coercion of "1" to 1) and no NaN or infinity, on top of the base."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class Upstream(WireModel):
    """Sent by a gateway: names its site and gateway, so a stored payload is self-describing."""

    v: Literal[1] = 1
    site: Id
    gateway: Id


_M = TypeVar("_M", bound=BaseModel)

def validated(cls: type[_M], **fields: Any) -> _M:
    """Construct through validation, turning a ValidationError into a ContractError."""
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise ContractError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError, root: str = "payload", limit: int = 5) -> str:
    """A validation error in one line: the first `limit` problems as `field.path: reason`."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or root
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
