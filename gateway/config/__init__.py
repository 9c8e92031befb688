"""Config and profile models (pydantic) and their YAML loader."""
