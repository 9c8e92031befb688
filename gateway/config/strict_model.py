"""`Strict`, the base of the config models still written with pydantic (site, rule packs,
drills): moved here from gateway.config.profile, whose classes are plain dataclasses now
(gateway.config.section), so that importing the profiles imports no pydantic.
gateway.config.profile still gives `Strict` to whoever imports it from there (lazily)."""

from gateway.strict import StrictModel


class Strict(StrictModel):
    """Base for every config model: unknown keys are errors, models are immutable, a field's
    docstring is its description (config reference, editor schema: read from the source when
    a schema is generated, gateway.config.schema, not while each class is built)."""
