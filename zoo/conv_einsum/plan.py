"""A complete evaluation plan: single-operand preprocessing, the pairwise steps of a path, final permute.

Plans depend only on (equation, shapes, options) and are cached, so a training step pays a dict lookup.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from .atomic import ConvStep, EinsumStep, Step, UnfoldStep, plan_pair
from .modes import Problem, resolve_problem
from .parse import ConvEinsumError, parse_equation
from .sequencer import OPTIMIZE_WORDS, ConvPathOptimizer, Network, Path, StepCost, linear_to_masks, naive_path, path_cost

PLAN_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Prep:
    """Single-operand preprocessing: take diagonals of repeated letters and sum out private letters."""

    sub_in: str
    sub_out: str

    def __call__(self, x: Tensor) -> Tensor:
        ids = {c: i for i, c in enumerate(dict.fromkeys(self.sub_in))}
        return torch.einsum(x, [ids[c] for c in self.sub_in], [ids[c] for c in self.sub_out])


@dataclass(frozen=True)
class StepInfo:
    """One row of the report: which operands, the pairwise equation, operation types, kernel, cost."""

    operands: tuple[int, int]
    equation: str
    types: str
    kernel: str
    cost: StepCost
    size: int


@dataclass(frozen=True)
class PathInfo:
    """Printable report of a conv_einsum path (in the spirit of opt_einsum's PathInfo).

    Costs are multiply-adds; ``*_cost`` counts forward + both backward products (what the sequencer
    minimises), ``*_forward`` the forward pass only. "naive" is left-to-right evaluation.
    """

    equation: str
    shapes: tuple[tuple[int, ...], ...]
    path: Path
    naive_cost: int
    opt_cost: int
    naive_forward: int
    opt_forward: int
    largest_intermediate: int
    naive_largest_intermediate: int
    steps: tuple[StepInfo, ...]
    search_seconds: float

    @property
    def speedup(self) -> float:
        return self.naive_cost / max(self.opt_cost, 1)

    def __str__(self) -> str:
        lines = [
            f"  Complete equation: {self.equation}",
            f"  Operand shapes: {', '.join(str(list(s)) for s in self.shapes)}",
            f"  Naive (left-to-right) cost, fwd+bwd: {self.naive_cost:.4e} MACs (forward {self.naive_forward:.4e})",
            f"  Optimized cost, fwd+bwd: {self.opt_cost:.4e} MACs (forward {self.opt_forward:.4e})",
            f"  Theoretical speedup: {self.speedup:.3g}",
            f"  Largest intermediate: {self.largest_intermediate:.4e} elements "
            f"(naive: {self.naive_largest_intermediate:.4e})",
            f"  Path search: {self.search_seconds * 1e3:.2f} ms",
            "-" * 96,
            f"{'step':>4}  {'operands':>8}  {'equation':<34} {'kernel':<8} {'fwd+bwd MACs':>13}  types",
            "-" * 96,
        ]
        for k, s in enumerate(self.steps):
            lines.append(
                f"{k:>4}  {str(s.operands):>8}  {s.equation:<34} {s.kernel:<8} {s.cost.training:>13.4e}  {s.types}"
            )
        return "\n".join(lines)

    __repr__ = __str__


def _step_types(problem: Problem, net: Network, ma: int, a: str, mb: int, b: str, out: str, step: Step) -> tuple[str, str]:
    """Operation types of one step (contract/batch/outer/conv/full-conv letters) and the torch kernel used."""
    conv = problem.equation.conv
    members = net.members(ma) | net.members(mb)
    groups: dict[str, list[str]] = {"contract": [], "batch": [], "outer": [], "conv": [], "full-conv": []}
    for c in dict.fromkeys(a + b):
        if c in conv and c in a and c in b:
            groups["conv" if problem.modes[c].data in members else "full-conv"].append(c)
        elif c in a and c in b:
            groups["batch" if c in out else "contract"].append(c)
        else:
            groups["outer"].append(c)
    kernel = f"conv{len(step.stride)}d" if isinstance(step, ConvStep) else (
        "unfold" if isinstance(step, UnfoldStep) else "einsum")
    types = "; ".join(f"{k} {''.join(v)}" for k, v in groups.items() if v)
    return types or "-", kernel


@dataclass(frozen=True)
class Plan:
    """Everything needed to evaluate one (equation, shapes, options) combination."""

    problem: Problem
    preps: tuple[Prep | None, ...]
    steps: tuple[tuple[int, int, Step], ...]
    final_perm: tuple[int, ...] | None
    info: PathInfo

    def run(self, *operands: Tensor) -> Tensor:
        """Evaluate the plan on operands whose shapes match the plan."""
        tensors = [p(x) if p is not None else x for p, x in zip(self.preps, operands)]
        for i, j, step in self.steps:
            b = tensors.pop(j)
            a = tensors.pop(i)
            tensors.append(step(a, b))
        (result,) = tensors
        return result.permute(self.final_perm) if self.final_perm is not None else result


def _preprocess(problem: Problem) -> tuple[tuple[Prep | None, ...], list[str]]:
    eq = problem.equation
    preps: list[Prep | None] = []
    subs: list[str] = []
    for i, sub in enumerate(eq.inputs):
        others = set(eq.output).union(*(s for k, s in enumerate(eq.inputs) if k != i))
        out = "".join(c for c in dict.fromkeys(sub) if c in others)
        preps.append(Prep(sub, out) if out != sub else None)
        subs.append(out)
    return tuple(preps), subs


def _memory_limit(value: object, problem: Problem) -> int | None:
    if value is None:
        return None
    if value == "max_input":
        return max((math.prod(s) for s in problem.shapes), default=1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConvEinsumError(f"memory_limit must be None, 'max_input' or a positive int (elements), got {value!r}")
    return value


def _choose_path(net: Network, optimize: object, limit: int | None) -> Path:
    if isinstance(optimize, str):
        if optimize not in OPTIMIZE_WORDS:
            raise ConvEinsumError(f"unknown optimize={optimize!r}; expected one of {OPTIMIZE_WORDS} or a path")
        if optimize == "naive":
            return naive_path(net.n)
        if optimize == "auto" and net.n > 2:
            # never a larger intermediate than left-to-right evaluation (which itself satisfies this bound)
            steps = linear_to_masks(naive_path(net.n), net.n)
            naive_largest = max(net.size(a | b) for a, b in steps[:-1])
            try:
                return ConvPathOptimizer(net, optimize, min(limit or naive_largest, naive_largest)).search()
            except ConvEinsumError:
                pass  # greedy may miss the bound: fall back to the user's limit alone
        return ConvPathOptimizer(net, optimize, limit).search()
    if isinstance(optimize, (list, tuple)):
        path = [tuple(int(i) for i in step) for step in optimize]
        linear_to_masks(path, net.n)  # validates
        return path  # type: ignore[return-value]
    raise ConvEinsumError(f"optimize must be one of {OPTIMIZE_WORDS} or a list of index pairs, got {optimize!r}")


def make_plan(equation: str, shapes: Sequence[Sequence[int]], stride: Any = 1, padding: Any = 0, dilation: Any = 1,
              padding_mode: str = "zeros", optimize: Any = "auto", memory_limit: Any = None) -> Plan:
    """Parse, validate, search a path and plan every step (uncached; see ``cached_plan``)."""
    eq = parse_equation(equation, len(shapes))
    problem = resolve_problem(eq, shapes, stride, padding, dilation, padding_mode)
    preps, subs = _preprocess(problem)
    net = Network(problem, [frozenset(s) for s in subs])
    limit = _memory_limit(memory_limit, problem)
    t0 = time.perf_counter()
    path = _choose_path(net, optimize, limit)
    search = time.perf_counter() - t0
    current = [(1 << i, s) for i, s in enumerate(subs)]
    steps: list[tuple[int, int, Step]] = []
    rows: list[StepInfo] = []
    for i, j in (sorted(p) for p in path):
        mb, b = current.pop(j)
        ma, a = current.pop(i)
        step, out = plan_pair(problem, net, ma, a, mb, b)
        steps.append((i, j, step))
        types, kernel = _step_types(problem, net, ma, a, mb, b, out, step)
        tail = "|" + "".join(c for c in eq.conv if c in a and c in b) if any(c in a and c in b for c in eq.conv) else ""
        rows.append(StepInfo((i, j), f"{a},{b}->{out}{tail}", types, kernel, net.pair_cost(ma, mb), net.size(ma | mb)))
        current.append((ma | mb, out))
    (_, final), = current
    final_perm = tuple(final.index(c) for c in eq.output) if final != eq.output else None
    cost, largest = path_cost(net, path)
    ncost, nlargest = path_cost(net, naive_path(net.n))
    info = PathInfo(eq.text(), problem.shapes, list(path), ncost.training, cost.training, ncost.forward, cost.forward,
                    largest, nlargest, tuple(rows), search)
    return Plan(problem, preps, tuple(steps), final_perm, info)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return ("__dict__", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__dict__":
        return {k: _thaw(v) for k, v in value[1]}
    if isinstance(value, tuple):
        return tuple(_thaw(v) for v in value)
    return value


@functools.lru_cache(maxsize=PLAN_CACHE_SIZE)
def _cached(key: tuple) -> Plan:
    equation, shapes, stride, padding, dilation, padding_mode, optimize, memory_limit = key
    return make_plan(equation, shapes, _thaw(stride), _thaw(padding), _thaw(dilation), padding_mode,
                     _thaw(optimize), memory_limit)


def cached_plan(equation: str, shapes: Sequence[Sequence[int]], stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                padding_mode: str = "zeros", optimize: Any = "auto", memory_limit: Any = None) -> Plan:
    """``make_plan`` memoised on (equation, shapes, options)."""
    key = (equation, tuple(tuple(int(n) for n in s) for s in shapes), _freeze(stride), _freeze(padding),
           _freeze(dilation), padding_mode, _freeze(optimize), memory_limit)
    try:
        return _cached(key)
    except TypeError as err:  # unhashable option values
        if "unhashable" not in str(err):
            raise
        return make_plan(equation, shapes, stride, padding, dilation, padding_mode, optimize, memory_limit)


def clear_plan_cache() -> None:
    """Forget every cached plan."""
    _cached.cache_clear()
