"""The `operators:` section of a gateway config: which keys may command this gateway over
`cmd`, what each may do, and in whose name.

Plain frozen dataclasses, without pydantic at import (gateway.config.section, issue 15):
pydantic validates them as fields of `GatewayConfig`, a running gateway uses them unpickled."""

from typing import Annotated, Literal

from gateway.config.section import Limits, section
from gateway.flashing.keys import KeyFileError, TrustedKey, parse_public_key_line
from gateway.records import dataclass

Permission = Literal["acknowledge", "acknowledge_all", "shelve", "suppress", "reset_output"]
KeyPermission = Literal["acknowledge", "acknowledge_all", "shelve", "suppress", "reset_output",
                        "drill"]
"""An operator key's: a panel user's, and `drill` (gateway.drills.signed)."""
PERMISSION_OF: dict[str, Permission] = {
    "acknowledge": "acknowledge", "acknowledge_all": "acknowledge_all",
    "shelve": "shelve", "unshelve": "shelve", "suppress": "suppress", "unsuppress": "suppress",
    "reset_output": "reset_output",
}
"""The permission each alarm command needs."""

OwnerName = Annotated[str, Limits(pattern=r"^\S(.*\S)?$", max_length=64)]
"""1-64 characters, no leading or trailing space: journalled as the actor."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorKey:
    """One operator key: `key` is the public line `roomwarden keys new` prints."""

    key: str
    """The public key line `roomwarden keys new` prints (`ed25519:<base64> NAME`)."""
    name: OwnerName | None = None
    """Whom the journal names for this key's commands (default: the key line's comment)."""
    may: Annotated[tuple[KeyPermission, ...], Limits(min_length=1)]
    """What the key may do: acknowledge (named alarms), acknowledge_all, shelve (and
    unshelve), suppress (and unsuppress), reset_output (release an output held on until an
    operator resets it: `restore_on_clear: false`), drill (sign the start of a live
    evacuation drill: `roomwarden drill --live FILE --evacuation --key KEY`, needed when
    `flashing.allow_local_unsigned` is false)."""

    def __post_init__(self) -> None:
        try:
            parsed = parse_public_key_line(self.key)
        except KeyFileError as exc:
            raise ValueError(f"key: {exc}") from None
        if self.name is None and not parsed.name:
            raise ValueError("name the key's owner: `name:` or a comment after the key "
                             "(the journal records who acknowledged)")
        if self.name is None and len(parsed.name or "") > 64:
            raise ValueError("the key's comment is longer than 64 characters; give `name:`")

    @property
    def trusted(self) -> TrustedKey:
        return parse_public_key_line(self.key)

    @property
    def owner(self) -> str:
        return self.name or self.trusted.name or self.trusted.key_id


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorSettings:
    """Remote operator commands on `cmd` (acknowledge, shelve, suppress …)."""

    keys: tuple[OperatorKey, ...] = ()
    """The operator keys this gateway trusts; none: every alarm command on `cmd` is refused
    (the local panel works regardless)."""
    allow_unsigned: bool = False
    """Lab only: carry out unsigned alarm commands (journalled as `unsigned-remote`). The
    gateway warns at every start and /healthz reports degraded."""

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for index, key in enumerate(self.keys):
            kid = key.trusted.key_id
            if kid in seen:
                raise ValueError(f"keys[{index}]: key {kid} is already keys[{seen[kid]}]")
            seen[kid] = index

    def find(self, key_id: str) -> OperatorKey | None:
        return next((k for k in self.keys if k.trusted.key_id == key_id), None)
