"""The config's names and ids (`Name`, `Id`, `PointKey`): strings of a pattern and a length,
declared without importing pydantic (gateway.config.section's `Limits`), so that a config
section that is a plain dataclass can use them in a module a running gateway imports; the
pydantic models of profiles and rules use the same types (gateway.config.profile)."""

from typing import Annotated

from gateway.config.section import Limits

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Name = Annotated[str, Limits(pattern=NAME_PATTERN, max_length=64)]
Id = Annotated[str, Limits(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
"""Ids of gateways, sites, rooms, buses, devices and outputs."""
PointKey = Annotated[str, Limits(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$",
                                 max_length=129)]
"""A point name, or `point.flag` for one flag of a status word."""
