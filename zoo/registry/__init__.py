"""The model registry: pydantic schema, YAML loading and merging of fragments."""
