"""The options of one conv_einsum evaluation as one frozen, hashable object.

Every entry point takes its options as keywords (``stride=2, padding=1, ...``) and turns them into one
``ConvEinsumOptions`` right away; everything below (planning, the plan cache, measuring, compiled
expressions) passes that object on. Values are stored in a hashable form: dicts become ``LetterMap``,
lists become tuples, so the object is a cache key as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Iterator, Mapping

from .parse import ConvEinsumError


class LetterMap(Mapping):
    """An immutable, hashable ``{letter: value}`` mapping (a per-letter option given as a dict)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any]):
        self._items = tuple(sorted((k, _freeze(v)) for k, v in items.items()))

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LetterMap):
            return self._items == other._items
        return isinstance(other, Mapping) and dict(self._items) == dict(other.items())

    def __repr__(self) -> str:
        return repr(dict(self._items))


def _freeze(value: Any) -> Any:
    """A hashable form of an option value: dicts -> LetterMap, lists and tuples -> tuples (recursively)."""
    if isinstance(value, LetterMap):
        return value
    if isinstance(value, Mapping):
        return LetterMap(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class ConvEinsumOptions:
    """Everything besides the equation and the operands that decides how conv_einsum evaluates.

    Geometry (per convolution letter: an int, one value per letter in the order after ``|``, or a
    ``{letter: value}`` dict): ``stride``, ``padding`` (also ``(left, right)``, "same", "valid", "full"),
    ``dilation``; ``padding_mode`` ("zeros" | "circular").
    Path: ``optimize`` (a registered path method such as "auto", "optimal", "greedy", "naive", see
    ``path_methods()``; "measure"; or an explicit path in opt_einsum's linear format), ``memory_limit``
    (largest intermediate in elements, or "max_input"), ``backward`` (the cost model counts the two
    backward products of every step, as for training; False: forward only, as for inference).
    Evaluation: ``checkpoint`` (recompute the intermediates in backward instead of storing them).

    Equal options compare and hash equal whatever form they were given in (a list or a tuple, a dict in
    any key order), so the object is the plan cache's key. Values are checked when a plan is made (the
    errors need the equation), except the names: ``from_kwargs`` rejects unknown ones.
    """

    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    padding_mode: str = "zeros"
    optimize: Any = "auto"
    memory_limit: Any = None
    backward: bool = True
    checkpoint: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _freeze(getattr(self, f.name)))
        for name in ("backward", "checkpoint"):
            if not isinstance(getattr(self, name), bool):
                raise ConvEinsumError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def from_kwargs(cls, options: "ConvEinsumOptions | None" = None, **kwargs: Any) -> "ConvEinsumOptions":
        """``options`` (default: all defaults) with ``kwargs`` replacing fields; unknown names raise."""
        known = tuple(f.name for f in fields(cls))
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ConvEinsumError(f"unknown conv_einsum option(s) {unknown}; known options: {list(known)}")
        if options is None:
            return cls(**kwargs)
        if not isinstance(options, cls):
            raise ConvEinsumError(f"options must be a ConvEinsumOptions, got {type(options).__name__}")
        return replace(options, **kwargs) if kwargs else options

    def replace(self, **kwargs: Any) -> "ConvEinsumOptions":
        """A copy with ``kwargs`` replacing fields (unknown names raise)."""
        return ConvEinsumOptions.from_kwargs(self, **kwargs)

    @property
    def geometry(self) -> dict[str, Any]:
        """The options that decide the convolution geometry (what ``resolve_problem`` takes)."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "padding_mode": self.padding_mode}

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT_OPTIONS = ConvEinsumOptions()
