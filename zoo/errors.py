"""Exceptions a user can act on."""

from __future__ import annotations

from typing import Sequence


class ZooError(Exception):
    """Base class of every error raised by zoo."""


class UnknownModelError(ZooError, KeyError):
    """A model name that is neither in the registry nor matched by a family's name grammar."""

    def __init__(self, name: str, suggestions: Sequence[str]):
        self.name = name
        self.suggestions = list(suggestions)
        hint = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown model {name!r}{hint} (see zoo.list_models())")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class RegistryError(ZooError, ValueError):
    """A registry file or entry that does not validate."""


class PluginError(ZooError, RuntimeError):
    """A family plugin that is missing, broken or inconsistent."""


class BuildError(ZooError, ValueError):
    """Build arguments a family's builder refuses (its own ``ValueError``, named with the model and builder)."""


class DataError(ZooError, ValueError):
    """User data (files, folders, splits) that cannot be used as given."""


class WeightsError(ZooError, RuntimeError):
    """Pretrained weights that are unavailable, corrupted or do not fit the model."""
