"""`IPvAnyNetwork`: an IPv4 or IPv6 network in a config (the panel's `metrics_allow`).

The same type as pydantic's `pydantic.networks.IPvAnyNetwork` — the same validation, error
(`ip_any_network`), serialisation and JSON Schema (`{"type": "string", "format":
"ipvanynetwork"}`) — defined here because `pydantic.networks` imports `importlib.metadata` (and
with it `email`, `zipfile`, `csv`) to look for the optional `email-validator`, which no config
uses (issue 15: docs/performance.md, Import cost).
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any, TypeAlias

__all__ = ["IPvAnyNetwork"]

if TYPE_CHECKING:  # pydantic is imported by a process that validates only (issue 15)
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic_core import core_schema

if TYPE_CHECKING:  # as pydantic's: a field of this type holds one of the two network types
    IPvAnyNetwork: TypeAlias = IPv4Network | IPv6Network
else:

    class IPvAnyNetwork:
        """Validate an IPv4 or IPv6 network (`10.0.0.0/8`, `::1/128`)."""

        __slots__ = ()

        def __new__(cls, value: Any) -> IPv4Network | IPv6Network:
            try:
                return IPv4Network(value)
            except ValueError:
                pass
            try:
                return IPv6Network(value)
            except ValueError:
                from pydantic_core import PydanticCustomError

                raise PydanticCustomError(
                    "ip_any_network", "value is not a valid IPv4 or IPv6 network") from None

        @classmethod
        def __get_pydantic_json_schema__(cls, _schema: core_schema.CoreSchema,
                                         _handler: GetJsonSchemaHandler) -> dict[str, Any]:
            return {"type": "string", "format": "ipvanynetwork"}

        @classmethod
        def __get_pydantic_core_schema__(cls, _source: type[Any], _handler: GetCoreSchemaHandler
                                         ) -> core_schema.CoreSchema:
            from pydantic_core import core_schema

            return core_schema.no_info_plain_validator_function(
                cls._validate, serialization=core_schema.to_string_ser_schema())

        @classmethod
        def _validate(cls, value: Any, /) -> IPv4Network | IPv6Network:
            return cls(value)
