"""Sizes of every letter and the geometry (data, kernels, stride, padding, dilation) of each convolution mode.

Convolution semantics (see docs/conv_einsum.md): for a conv letter, the DATA operand is the first operand
(in equation order) carrying it, whatever the sizes; every later operand carrying it is a kernel. Kernels compose
by full (polynomial) convolution into one effective kernel K of length sum(L_i) - m + 1. The output is the
cross-correlation (kernel not flipped, as F.convNd) of the padded data with K dilated by ``dilation``,
sampled with ``stride``:  y[o] = sum_k x_pad[o * stride + dilation * k] * K[k].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Union

from .parse import ConvEinsumError, Equation

PadSpec = Union[int, str, tuple[int, int]]
PADDING_WORDS = ("same", "valid", "full")
PADDING_MODES = ("zeros", "circular")


@dataclass(frozen=True)
class ConvMode:
    """Geometry of one convolution letter.

    data / data_size: the data operand index and its length; kernels / kernel_sizes: the kernel operands
    and their lengths; pad: (left, right) padding of the data; out_size: length of the output mode.
    """

    letter: str
    data: int
    data_size: int
    kernels: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    stride: int
    dilation: int
    pad: tuple[int, int]
    circular: bool
    out_size: int

    @property
    def kernel_len(self) -> int:
        """Length of the effective (composed) kernel."""
        return sum(self.kernel_sizes) - len(self.kernel_sizes) + 1

    def length(self, members: frozenset[int]) -> int:
        """Length along this letter of the intermediate built from the operand set ``members``."""
        ks = [s for k, s in zip(self.kernels, self.kernel_sizes) if k in members]
        if self.data not in members:
            return sum(ks) - len(ks) + 1
        if not ks:
            return self.data_size
        span = self.data_size + sum(self.pad) - self.dilation * sum(s - 1 for s in ks)
        if len(ks) == len(self.kernels):
            return (span - 1) // self.stride + 1
        return span


@dataclass(frozen=True)
class Problem:
    """An equation with all sizes resolved: the input to the sequencer and the planner."""

    equation: Equation
    shapes: tuple[tuple[int, ...], ...]
    sizes: Mapping[str, int]  # non-conv letters
    modes: Mapping[str, ConvMode]  # conv letters

    def size(self, letter: str, members: frozenset[int]) -> int:
        """Size of ``letter`` in the intermediate built from ``members``."""
        mode = self.modes.get(letter)
        return mode.length(members) if mode is not None else self.sizes[letter]


def _per_letter(value: object, conv: str, name: str) -> dict[str, object]:
    """Spread an option given as a scalar, a sequence (one per conv letter) or a dict over the conv letters."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(conv))
        if unknown:
            raise ConvEinsumError(
                f"{name} given for letter(s) {''.join(map(str, unknown))!r}, which are not convolution letters "
                f"(convolution letters: {conv!r}); {name} only applies to modes convolved with the data"
            )
        return {c: value.get(c, _DEFAULTS[name]) for c in conv}
    if isinstance(value, (list, tuple)) and not (name == "padding" and _is_pair(value) and len(conv) != 2):
        if len(value) != len(conv):
            raise ConvEinsumError(
                f"{name} sequence {value!r} has {len(value)} entries but there are {len(conv)} convolution "
                f"letters {conv!r}; give one per letter, a single value, or a dict"
            )
        return dict(zip(conv, value))
    return {c: value for c in conv}


def _is_pair(value: object) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)


_DEFAULTS: dict[str, object] = {"stride": 1, "dilation": 1, "padding": 0}


def _positive(value: object, name: str, letter: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConvEinsumError(f"{name} for letter {letter!r} must be a positive int, got {value!r}")
    return value


def _resolve_pad(value: object, letter: str, kspan: int, stride: int) -> tuple[int, int]:
    """(left, right) padding for a letter whose dilated effective kernel spans ``kspan`` samples."""
    if isinstance(value, str):
        if value not in PADDING_WORDS:
            raise ConvEinsumError(f"unknown padding {value!r} for letter {letter!r}; expected one of {PADDING_WORDS}, an int or a (left, right) pair")
        if value == "valid":
            return (0, 0)
        if value == "full":
            return (kspan - 1, kspan - 1)
        if stride != 1:
            raise ConvEinsumError(f"padding='same' needs stride 1 (as in F.conv2d), letter {letter!r} has stride {stride}")
        total = kspan - 1
        return (total // 2, total - total // 2)
    if _is_pair(value) and all(v >= 0 for v in value):  # type: ignore[union-attr]
        return (int(value[0]), int(value[1]))  # type: ignore[index]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConvEinsumError(
            f"padding for letter {letter!r} must be a non-negative int, a (left, right) pair or one of {PADDING_WORDS}, got {value!r}"
        )
    return (value, value)


def resolve_problem(
    equation: Equation,
    shapes: Sequence[Sequence[int]],
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    padding_mode: str = "zeros",
) -> Problem:
    """Check the operand shapes against ``equation`` and resolve the convolution geometry."""
    shapes = tuple(tuple(int(s) for s in shape) for shape in shapes)
    sizes: dict[str, int] = {}
    where: dict[str, int] = {}
    conv = equation.conv
    for i, (sub, shape) in enumerate(zip(equation.inputs, shapes)):
        if len(sub) != len(shape):
            raise ConvEinsumError(
                f"operand {i} has {len(shape)} dimension(s) {list(shape)} but its subscripts {sub!r} name {len(sub)}"
            )
        for c, n in zip(sub, shape):
            if c in conv:
                continue
            if c in sizes and sizes[c] != n:
                raise ConvEinsumError(
                    f"size mismatch for letter {c!r}: {sizes[c]} in operand {where[c]} but {n} in operand {i} "
                    f"(only convolution letters, after '|', may differ between operands)"
                )
            sizes.setdefault(c, n)
            where.setdefault(c, i)
    if padding_mode not in PADDING_MODES:
        raise ConvEinsumError(f"unknown padding_mode {padding_mode!r}; expected one of {PADDING_MODES}")
    if not conv:
        for name, value in (("stride", stride), ("padding", padding), ("dilation", dilation)):
            if isinstance(value, Mapping) and value:
                _per_letter(value, conv, name)  # raises: letters that are not conv letters
            elif not isinstance(value, Mapping) and value not in (_DEFAULTS[name], "valid"):
                raise ConvEinsumError(
                    f"{name}={value!r} given but the equation has no convolution letters (add them after '|')"
                )
        return Problem(equation, shapes, sizes, {})
    strides = _per_letter(stride, conv, "stride")
    dilations = _per_letter(dilation, conv, "dilation")
    paddings = _per_letter(padding, conv, "padding")
    modes: dict[str, ConvMode] = {}
    for c in conv:
        holders = [(i, shapes[i][sub.index(c)]) for i, sub in enumerate(equation.inputs) if c in sub]
        (data, data_size), rest = holders[0], holders[1:]  # the data is decided by the equation, never by sizes
        kernels = tuple(i for i, _ in rest)
        ksizes = tuple(n for _, n in rest)
        if data_size < 1 or min(ksizes) < 1:
            raise ConvEinsumError(f"convolution letter {c!r} has an empty mode (sizes {[n for _, n in holders]})")
        s = _positive(strides[c], "stride", c)
        d = _positive(dilations[c], "dilation", c)
        klen = sum(ksizes) - len(ksizes) + 1
        kspan = d * (klen - 1) + 1
        pad = _resolve_pad(paddings[c], c, kspan, s)
        circular = padding_mode == "circular"
        if circular and max(pad) > data_size:
            raise ConvEinsumError(
                f"circular padding {pad} along {c!r} is larger than the data size {data_size} (operand {data})"
            )
        span = data_size + sum(pad) - kspan
        if span < 0:
            raise ConvEinsumError(_no_output_message(equation, c, data, data_size, pad, kspan, kernels, ksizes))
        modes[c] = ConvMode(c, data, data_size, kernels, ksizes, s, d, pad, circular, span // s + 1)
    return Problem(equation, shapes, sizes, modes)


def _no_output_message(equation: Equation, letter: str, data: int, data_size: int, pad: tuple[int, int],
                       kspan: int, kernels: Sequence[int], ksizes: Sequence[int]) -> str:
    """Why a convolution along ``letter`` leaves no output: what was expected, what was given, and a hint
    when a kernel operand is longer than the data (the data is the first operand, not the longest)."""
    msg = (f"convolution along {letter!r} leaves no output: expected the padded data to be at least as long as "
           f"the dilated effective kernel span {kspan} (kernel operand(s) {list(kernels)} of size(s) {list(ksizes)}), "
           f"got data size {data_size} (operand {data}, {equation.inputs[data]!r}) with padding {pad}, "
           f"i.e. {data_size + sum(pad)}")
    longer = [k for k, n in zip(kernels, ksizes) if n > data_size]
    if longer:
        msg += (f"; the data of a convolution letter is the first operand carrying it, never the longest: "
                f"if operand {longer[0]} ({equation.inputs[longer[0]]!r}) is the data, list it first")
    return msg
