"""Parsing and validation of conv_einsum equations such as ``"bshw,tshw->bthw|hw"``.

Only strings are handled here; sizes are checked in :mod:`zoo.conv_einsum.modes`.
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass

from zoo.errors import ZooError

LETTERS = frozenset(string.ascii_letters)


class ConvEinsumError(ZooError, ValueError):
    """A conv_einsum call whose equation, shapes or options are inconsistent."""


@dataclass(frozen=True)
class Equation:
    """A parsed equation.

    inputs: one subscript string per operand (may contain repeated letters, may be empty);
    output: the output subscripts (explicit, or derived as in ``torch.einsum`` plus the conv letters);
    conv: the convolution letters, in the order they follow ``|``.
    """

    inputs: tuple[str, ...]
    output: str
    conv: str

    def text(self) -> str:
        """The canonical equation string."""
        tail = f"|{self.conv}" if self.conv else ""
        return ",".join(self.inputs) + "->" + self.output + tail


def _check_letters(part: str, where: str) -> None:
    bad = sorted(set(part) - LETTERS)
    if bad:
        if "." in bad:
            raise ConvEinsumError(f"ellipsis ('...') is not supported in conv_einsum; name every mode ({where} {part!r})")
        raise ConvEinsumError(f"invalid character(s) {''.join(bad)!r} in {where} {part!r}; expected ASCII letters a-z, A-Z")


def parse_equation(equation: str, num_operands: int) -> Equation:
    """Parse ``equation`` for ``num_operands`` operands and check everything that needs no sizes.

    Raises ConvEinsumError for: a wrong number of operands, bad characters, a repeated output letter,
    an output letter in no input, a convolution letter that is missing from the output, repeated
    inside one operand, or carried by fewer than two operands.
    """
    if not isinstance(equation, str):
        raise ConvEinsumError(f"equation must be a str, got {type(equation).__name__}")
    eq = "".join(equation.split())
    if eq.count("|") > 1:
        raise ConvEinsumError(f"equation {equation!r} has more than one '|'; expected 'inputs->output|convletters'")
    body, _, conv = eq.partition("|")
    _check_letters(conv, "convolution letters")
    if len(set(conv)) != len(conv):
        raise ConvEinsumError(f"convolution letters {conv!r} repeat a letter")
    if body.count("->") > 1:
        raise ConvEinsumError(f"equation {equation!r} has more than one '->'")
    explicit = "->" in body
    lhs, _, out = body.partition("->")
    inputs = tuple(lhs.split(","))
    if len(inputs) != num_operands:
        raise ConvEinsumError(
            f"equation {equation!r} names {len(inputs)} operand(s) but {num_operands} tensor(s) were given"
        )
    for i, sub in enumerate(inputs):
        _check_letters(sub, f"subscripts of operand {i}")
    counts = Counter("".join(inputs))
    if explicit:
        _check_letters(out, "output subscripts")
        repeated = sorted(c for c, n in Counter(out).items() if n > 1)
        if repeated:
            raise ConvEinsumError(f"output {out!r} repeats letter(s) {''.join(repeated)!r}")
        missing = sorted(set(out) - set(counts))
        if missing:
            raise ConvEinsumError(f"output letter(s) {''.join(missing)!r} of {equation!r} appear in no input")
    else:
        out = "".join(sorted({c for c, n in counts.items() if n == 1} | set(conv)))
    for c in conv:
        holders = [i for i, sub in enumerate(inputs) if c in sub]
        if not holders:
            raise ConvEinsumError(f"convolution letter {c!r} of {equation!r} appears in no input")
        if c not in out:
            raise ConvEinsumError(
                f"convolution letter {c!r} is missing from the output {out!r}; a convolution mode must be kept"
            )
        for i in holders:
            if inputs[i].count(c) > 1:
                raise ConvEinsumError(f"convolution letter {c!r} repeats inside operand {i} ({inputs[i]!r})")
        if len(holders) < 2:
            raise ConvEinsumError(
                f"convolution letter {c!r} appears only in operand {holders[0]}; a convolution needs a data "
                f"operand and at least one kernel operand carrying {c!r}"
            )
    return Equation(inputs=inputs, output=out, conv=conv)
