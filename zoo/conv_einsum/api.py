"""Public entry points: ``conv_einsum``, ``conv_einsum_path`` and ``conv_einsum_expression``.

Each takes its options as keywords (see :class:`~zoo.conv_einsum.options.ConvEinsumOptions`, or pass one as
``options=``) and turns them into one hashable options object before anything else.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import torch
from torch import Tensor

from .checkpoint import run_checkpointed
from .measure import measured_plan, measures
from .options import ConvEinsumOptions
from .parse import ConvEinsumError
from .plan import PathInfo, Plan, cached_plan, make_setup

Path = list[tuple[int, int]]


def conv_einsum(equation: str, *operands: Tensor, **options: Any) -> Tensor:
    """Evaluate a multilinear expression with convolutions, e.g. ``"bshw,rt,rs,rh,rw->bthw|hw"``.

    Letters after ``|`` are convolution modes; every other letter follows ``torch.einsum``. For each
    convolution letter the first operand carrying it is the data (never decided by sizes), every later one a kernel;
    kernels compose by full convolution and the result is the cross-correlation (not flipped, as F.convNd)
    of the data with the composed kernel, with ``stride``, ``padding`` (int, (left, right), "same", "valid",
    "full"), ``dilation`` (each an int, one value per conv letter, or a {letter: value} dict) and
    ``padding_mode`` ("zeros" or "circular"). Output sizes follow F.convNd.

    optimize: a path method ("auto" | "optimal" | "greedy" | "naive" (left to right) | any registered with
    ``register_path_method``) | "measure" (time a few candidate paths on the first call for these
    shapes/dtype/device/grad pattern, keep the fastest; also what "auto" does after ``set_autotune(True)`` or
    with ZOO_CONV_EINSUM_AUTOTUNE=1) | a path (list of index pairs); memory_limit: largest intermediate in
    elements (or "max_input"); backward: whether path costs count the backward products (default True);
    checkpoint: recompute the intermediates in backward instead of storing them; options: a
    ``ConvEinsumOptions`` the other keywords amend. Raises ConvEinsumError on inconsistent input.
    """
    opts = ConvEinsumOptions.from_kwargs(**options)
    operands = _prepare(operands)
    if measures(opts.optimize):
        plan = measured_plan(equation, operands, opts)
    else:
        plan = cached_plan(equation, [tuple(t.shape) for t in operands], opts)
    return _run(plan, operands, opts.checkpoint)


def conv_einsum_path(equation: str, *operands: Tensor | Sequence[int], **options: Any) -> tuple[Path, PathInfo]:
    """The path conv_einsum would use and a printable PathInfo; operands may be tensors or shapes.

    With "measure", the PathInfo lists every candidate's measured time. Operands given as shapes are timed
    as zero tensors (dtype and device of the tensors given, else the defaults) that all require grad.
    """
    opts = ConvEinsumOptions.from_kwargs(**options)
    shapes = [tuple(t.shape) if isinstance(t, Tensor) else tuple(t) for t in operands]
    if measures(opts.optimize):
        ref = next((t for t in operands if isinstance(t, Tensor)), None)
        like = {"dtype": ref.dtype, "device": ref.device} if ref is not None else {}
        tensors = [t if isinstance(t, Tensor) else torch.zeros(s, **like, requires_grad=True)
                   for t, s in zip(operands, shapes)]
        plan = measured_plan(equation, tensors, opts.replace(checkpoint=False))
    else:
        plan = cached_plan(equation, shapes, opts)
    return list(plan.info.path), plan.info


class ConvEinsumExpression:
    """A conv_einsum compiled for fixed operand shapes and options (as ``opt_einsum.contract_expression``).

    Calling it with tensors of those shapes evaluates the planned path: no parsing, path search or cache
    lookup per call. With ``optimize="measure"`` (or "auto" while autotuning is on when it is built) the path
    is measured on the first call for each (dtype, device, which operands need gradients) and kept.
    ``path`` / ``info``: the planned path and its PathInfo (for a measuring expression: those of the
    latest call, None before the first).
    """

    def __init__(self, equation: str, shapes: Sequence[Sequence[int]], options: ConvEinsumOptions):
        self.equation = equation
        self.shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        self.options = options
        self._measures = measures(options.optimize)
        self._measured: dict[Hashable, Plan] = {}
        if self._measures:
            make_setup(equation, self.shapes, options)  # every error that needs no tensors is raised now
            self._plan: Plan | None = None
        else:
            self._plan = cached_plan(equation, self.shapes, options)

    @property
    def info(self) -> PathInfo | None:
        return self._plan.info if self._plan is not None else None

    @property
    def path(self) -> Path | None:
        return list(self._plan.info.path) if self._plan is not None else None

    def __call__(self, *operands: Tensor) -> Tensor:
        operands = _prepare(operands)
        if len(operands) != len(self.shapes) or any(tuple(t.shape) != s for t, s in zip(operands, self.shapes)):
            raise ConvEinsumError(
                f"this expression of {self.equation!r} was compiled for shapes {[list(s) for s in self.shapes]}, "
                f"got {[list(t.shape) for t in operands]}; build one per shape with conv_einsum_expression"
            )
        plan = self._plan
        if self._measures:
            key = (operands[0].dtype, operands[0].device,
                   tuple(torch.is_grad_enabled() and t.requires_grad for t in operands)) if operands else None
            plan = self._measured.get(key)
            if plan is None:
                plan = self._measured[key] = measured_plan(self.equation, operands, self.options)
            self._plan = plan
        return _run(plan, operands, self.options.checkpoint)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        shapes = ", ".join(str(list(s)) for s in self.shapes)
        return f"ConvEinsumExpression({self.equation!r}, {shapes}, path={self.path})"


def conv_einsum_expression(equation: str, *shapes: Sequence[int], **options: Any) -> ConvEinsumExpression:
    """Compile ``equation`` for operands of ``shapes`` (tuples; tensors are taken for their shapes) and the
    options of :func:`conv_einsum` into a callable ``expr(*operands)``. Errors that need no tensors (equation,
    sizes, geometry, path) are raised here."""
    opts = ConvEinsumOptions.from_kwargs(**options)
    return ConvEinsumExpression(equation, [tuple(s.shape) if isinstance(s, Tensor) else tuple(s) for s in shapes], opts)


def _prepare(operands: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Check the operands are tensors of one dtype and device (after autocast's casts)."""
    if not all(isinstance(t, Tensor) for t in operands):
        bad = [type(t).__name__ for t in operands if not isinstance(t, Tensor)]
        raise ConvEinsumError(f"conv_einsum operands must be torch.Tensor, got {bad}")
    operands = _autocast_operands(tuple(operands))
    if operands:
        dtypes = {t.dtype for t in operands}
        devices = {t.device for t in operands}
        if len(dtypes) > 1 or len(devices) > 1:
            raise ConvEinsumError(
                f"conv_einsum operands must share dtype and device, got dtypes {sorted(map(str, dtypes))} "
                f"and devices {sorted(map(str, devices))}"
            )
    return operands


def _run(plan: Plan, operands: tuple[Tensor, ...], checkpoint: bool) -> Tensor:
    return run_checkpointed(plan, operands) if checkpoint else plan.run(*operands)


def _autocast_operands(operands: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Inside ``torch.autocast`` conv_einsum is a lower-precision op, like ``F.conv2d`` and ``matmul``: its
    floating operands are cast to the autocast dtype (so a bf16 activation meets fp32 factors legally)."""
    if not operands:
        return operands
    device_type = operands[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return operands
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in operands)
