"""Public entry points: ``conv_einsum`` and ``conv_einsum_path``."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from .checkpoint import run_checkpointed
from .measure import measured_plan, measures
from .parse import ConvEinsumError
from .plan import PathInfo, Plan, cached_plan

Path = list[tuple[int, int]]


def _plan(equation: str, shapes: Sequence[Sequence[int]], stride: Any, padding: Any, dilation: Any,
          padding_mode: str, optimize: Any, memory_limit: Any) -> Plan:
    return cached_plan(equation, shapes, stride, padding, dilation, padding_mode, optimize, memory_limit)


def conv_einsum(equation: str, *operands: Tensor, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                padding_mode: str = "zeros", optimize: Any = "auto", memory_limit: Any = None,
                checkpoint: bool = False) -> Tensor:
    """Evaluate a multilinear expression with convolutions, e.g. ``"bshw,rt,rs,rh,rw->bthw|hw"``.

    Letters after ``|`` are convolution modes; every other letter follows ``torch.einsum``. For each
    convolution letter the first operand carrying it is the data (never decided by sizes), every later one a kernel;
    kernels compose by full convolution and the result is the cross-correlation (not flipped, as F.convNd)
    of the data with the composed kernel, with ``stride``, ``padding`` (int, (left, right), "same", "valid",
    "full"), ``dilation`` (each an int, one value per conv letter, or a {letter: value} dict) and
    ``padding_mode`` ("zeros" or "circular"). Output sizes follow F.convNd.

    optimize: "auto" | "optimal" | "greedy" | "naive" (left to right) | "measure" (time a few candidate
    paths on the first call for these shapes/dtype/device/grad pattern, keep the fastest; also what "auto"
    does after ``set_autotune(True)`` or with ZOO_CONV_EINSUM_AUTOTUNE=1) | a path (list of index pairs);
    memory_limit: largest intermediate in elements (or "max_input"); checkpoint: recompute the
    intermediates in backward instead of storing them. Raises ConvEinsumError on inconsistent input.
    """
    if not all(isinstance(t, Tensor) for t in operands):
        bad = [type(t).__name__ for t in operands if not isinstance(t, Tensor)]
        raise ConvEinsumError(f"conv_einsum operands must be torch.Tensor, got {bad}")
    operands = _autocast_operands(operands)
    if operands:
        dtypes = {t.dtype for t in operands}
        devices = {t.device for t in operands}
        if len(dtypes) > 1 or len(devices) > 1:
            raise ConvEinsumError(
                f"conv_einsum operands must share dtype and device, got dtypes {sorted(map(str, dtypes))} "
                f"and devices {sorted(map(str, devices))}"
            )
    if measures(optimize):
        plan = measured_plan(equation, operands, stride, padding, dilation, padding_mode, memory_limit, checkpoint)
    else:
        plan = _plan(equation, [tuple(t.shape) for t in operands], stride, padding, dilation, padding_mode,
                     optimize, memory_limit)
    if checkpoint:
        return run_checkpointed(plan, operands)
    return plan.run(*operands)


def conv_einsum_path(equation: str, *operands: Tensor | Sequence[int], stride: Any = 1, padding: Any = 0,
                     dilation: Any = 1, padding_mode: str = "zeros", optimize: Any = "auto",
                     memory_limit: Any = None) -> tuple[Path, PathInfo]:
    """The path conv_einsum would use and a printable PathInfo; operands may be tensors or shapes.

    With "measure", the PathInfo lists every candidate's measured time. Operands given as shapes are timed
    as zero tensors (dtype and device of the tensors given, else the defaults) that all require grad.
    """
    shapes = [tuple(t.shape) if isinstance(t, Tensor) else tuple(t) for t in operands]
    if measures(optimize):
        ref = next((t for t in operands if isinstance(t, Tensor)), None)
        like = {"dtype": ref.dtype, "device": ref.device} if ref is not None else {}
        tensors = [t if isinstance(t, Tensor) else torch.zeros(s, **like, requires_grad=True)
                   for t, s in zip(operands, shapes)]
        plan = measured_plan(equation, tensors, stride, padding, dilation, padding_mode, memory_limit, False)
    else:
        plan = _plan(equation, shapes, stride, padding, dilation, padding_mode, optimize, memory_limit)
    return list(plan.info.path), plan.info


def _autocast_operands(operands: Sequence[Tensor]) -> Sequence[Tensor]:
    """Inside ``torch.autocast`` conv_einsum is a lower-precision op, like ``F.conv2d`` and ``matmul``: its
    floating operands are cast to the autocast dtype (so a bf16 activation meets fp32 factors legally)."""
    if not operands:
        return operands
    device_type = operands[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return operands
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in operands)
