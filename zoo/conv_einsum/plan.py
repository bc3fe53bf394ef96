"""A complete evaluation plan: single-operand preprocessing, the pairwise steps of a path, final permute.

Plans depend only on (equation, shapes, options) and are cached, so a training step pays a dict lookup;
``options`` is one hashable :class:`ConvEinsumOptions`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Hashable, Sequence

import torch
from torch import Tensor

from .atomic import ConvStep, EinsumStep, MatmulStep, Step, UnfoldStep, plan_pair
from .modes import Problem, resolve_problem
from .options import ConvEinsumOptions
from .parse import ConvEinsumError, parse_equation
from .sequencer import PATH_METHODS, Network, Path, StepCost, get_path_method, linear_to_masks, naive_path, path_cost

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
class Measurement:
    """One candidate path timed by ``optimize="measure"``: seconds is the best run, None when not timed (see note)."""

    label: str
    path: Path
    cost: int
    largest: int
    seconds: float | None
    note: str = ""


@dataclass(frozen=True)
class PathInfo:
    """Printable report of a conv_einsum path (in the spirit of opt_einsum's PathInfo).

    Costs are multiply-adds; ``*_cost`` counts forward + both backward products (what the sequencer
    minimises), ``*_forward`` the forward pass only. "naive" is left-to-right evaluation. ``measured``:
    the candidates timed by ``optimize="measure"`` (empty otherwise), ``measure_seconds`` their total time.
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
    measured: tuple[Measurement, ...] = ()
    measure_seconds: float = 0.0

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
        if self.measured:
            lines += [
                "-" * 96,
                f"  Measured candidates (best run; {self.measure_seconds * 1e3:.1f} ms spent measuring):",
                f"  {'':2}{'candidate':<16} {'time ms':>10} {'fwd+bwd MACs':>13} {'largest':>11}  path",
            ]
            for m in self.measured:
                mark = "*" if m.path == self.path else " "
                t = f"{m.seconds * 1e3:10.3f}" if m.seconds is not None else f"{'-':>10}"
                note = f"  ({m.note})" if m.note else ""
                lines.append(f"  {mark} {m.label:<16} {t} {m.cost:>13.4e} {m.largest:>11.4e}  {m.path}{note}")
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
        "unfold" if isinstance(step, UnfoldStep) else "matmul" if isinstance(step, MatmulStep) else "einsum")
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
        """Evaluate the plan on operands whose shapes match the plan; the result is contiguous."""
        tensors = [p(x) if p is not None else x for p, x in zip(self.preps, operands)]
        for i, j, step in self.steps:
            b = tensors.pop(j)
            a = tensors.pop(i)
            tensors.append(step(a, b))
        (result,) = tensors
        # contiguous: a permuted view (e.g. NHWC strides from an einsum) would make later layers switch
        # memory format (batch norm keeps it, F.conv2d then converts its weight on every call)
        return (result.permute(self.final_perm) if self.final_perm is not None else result).contiguous()


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


def choose_path(net: Network, optimize: object, limit: int | None) -> Path:
    """The path for a registered path method's name or an explicit path ("measure" is handled by measure.py)."""
    if isinstance(optimize, str):
        path = [tuple(step) for step in get_path_method(optimize)(net, limit)]
        try:
            linear_to_masks(path, net.n)
        except ConvEinsumError as err:
            raise ConvEinsumError(f"path method {optimize!r} returned an invalid path: {err}") from None
        return path  # type: ignore[return-value]
    if isinstance(optimize, (list, tuple)):
        path = [tuple(int(i) for i in step) for step in optimize]
        linear_to_masks(path, net.n)  # validates
        return path  # type: ignore[return-value]
    raise ConvEinsumError(f"optimize must be a path method's name or a list of index pairs, got {optimize!r}")


@dataclass(frozen=True)
class Setup:
    """What every path of one (equation, shapes, options) shares: the problem, preprocessing and network."""

    problem: Problem
    preps: tuple[Prep | None, ...]
    subs: tuple[str, ...]
    net: Network
    limit: int | None


def make_setup(equation: str, shapes: Sequence[Sequence[int]], options: ConvEinsumOptions = ConvEinsumOptions()) -> Setup:
    """Parse and validate; resolve the geometry, the single-operand preprocessing and the network."""
    eq = parse_equation(equation, len(shapes))
    problem = resolve_problem(eq, shapes, **options.geometry)
    preps, subs = _preprocess(problem)
    net = Network(problem, [frozenset(s) for s in subs], options.backward)
    return Setup(problem, preps, tuple(subs), net, _memory_limit(options.memory_limit, problem))


def _plan_steps(setup: Setup, path: Path, orders: dict[int, str]) -> tuple[list[tuple[int, int, Step]], list[StepInfo], str, dict[int, str]]:
    """Plan every step of ``path``; einsum step k returns its letters in ``orders[k]`` when given.

    Also returns, for einsum steps whose result feeds a convolution, the letter order that convolution
    reads its operand in (so a second pass can produce it directly, without a permuted copy).
    """
    problem, net, eq = setup.problem, setup.net, setup.problem.equation
    current: list[tuple[int, str, int | None]] = [(1 << i, s, None) for i, s in enumerate(setup.subs)]
    steps: list[tuple[int, int, Step]] = []
    rows: list[StepInfo] = []
    wants: dict[int, str] = {}
    for k, (i, j) in enumerate(sorted(p) for p in path):
        mb, b, pb = current.pop(j)
        ma, a, pa = current.pop(i)
        step, out = plan_pair(problem, net, ma, a, mb, b, orders.get(k))
        if isinstance(step, ConvStep):
            (x, px), (w, pw) = ((b, pb), (a, pa)) if step.swap else ((a, pa), (b, pb))
            for letters, perm, producer in ((x, step.x_perm, px), (w, step.w_perm, pw)):
                if producer is not None and isinstance(steps[producer][2], (EinsumStep, MatmulStep)):
                    wants[producer] = "".join(letters[q] for q in perm)
        steps.append((i, j, step))
        types, kernel = _step_types(problem, net, ma, a, mb, b, out, step)
        shared = "".join(c for c in eq.conv if c in a and c in b)
        tail = f"|{shared}" if shared else ""
        rows.append(StepInfo((i, j), f"{a},{b}->{out}{tail}", types, kernel, net.pair_cost(ma, mb), net.size(ma | mb)))
        current.append((ma | mb, out, k))
    (_, final, _), = current
    return steps, rows, final, wants


def plan_for_path(setup: Setup, path: Path, search_seconds: float = 0.0) -> Plan:
    """Plan every step of a validated ``path`` and build its PathInfo.

    Einsum steps that feed a convolution return their result in the layout that convolution reads (e.g. a
    rebuilt dense kernel comes out as (out channels, in channels, *kernel) for F.convNd): no permuted copies.
    """
    steps, rows, final, wants = _plan_steps(setup, path, {})
    if any(rows[k].equation.split("->")[1].split("|")[0] != order for k, order in wants.items()):
        steps, rows, final, _ = _plan_steps(setup, path, wants)
    eq, net = setup.problem.equation, setup.net
    final_perm = tuple(final.index(c) for c in eq.output) if final != eq.output else None
    cost, largest = path_cost(net, path)
    ncost, nlargest = path_cost(net, naive_path(net.n))
    info = PathInfo(eq.text(), setup.problem.shapes, list(path), ncost.training, cost.training, ncost.forward,
                    cost.forward, largest, nlargest, tuple(rows), search_seconds)
    return Plan(setup.problem, setup.preps, tuple(steps), final_perm, info)


def make_plan(equation: str, shapes: Sequence[Sequence[int]], options: ConvEinsumOptions = ConvEinsumOptions()) -> Plan:
    """Parse, validate, search a path and plan every step (uncached; see ``cached_plan``)."""
    setup = make_setup(equation, shapes, options)
    t0 = time.perf_counter()
    path = choose_path(setup.net, options.optimize, setup.limit)
    return plan_for_path(setup, path, time.perf_counter() - t0)


def with_measurements(plan: Plan, measured: Sequence[Measurement], seconds: float, search_seconds: float) -> Plan:
    """``plan`` whose PathInfo also reports the timed candidates, the time spent measuring and searching."""
    info = replace(plan.info, measured=tuple(measured), measure_seconds=seconds, search_seconds=search_seconds)
    return replace(plan, info=info)


class PlanCache:
    """Least-recently-used map from a hashable key to a Plan (shared by path-searched and measured plans).

    ``hits`` / ``misses`` count lookups since creation.
    """

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.hits = self.misses = 0
        self._plans: OrderedDict[Hashable, Plan] = OrderedDict()

    def get(self, key: Hashable) -> Plan | None:
        plan = self._plans.get(key)
        if plan is None:
            self.misses += 1
        else:
            self.hits += 1
            self._plans.move_to_end(key)
        return plan

    def put(self, key: Hashable, plan: Plan) -> None:
        self._plans[key] = plan
        self._plans.move_to_end(key)
        while len(self._plans) > self.maxsize:
            self._plans.popitem(last=False)

    def clear(self) -> None:
        self._plans.clear()

    def __len__(self) -> int:
        return len(self._plans)


PLAN_CACHE = PlanCache(PLAN_CACHE_SIZE)


def plan_key(equation: str, shapes: Sequence[Sequence[int]], options: ConvEinsumOptions) -> tuple:
    """The plan cache's key of (equation, shapes, options), and the path method a name stands for now (so a
    method registered again under the same name, or removed, is not served from the cache)."""
    method = PATH_METHODS.get(options.optimize) if isinstance(options.optimize, str) else None
    return (equation, tuple(tuple(int(n) for n in s) for s in shapes), options, method)


def cached_plan(equation: str, shapes: Sequence[Sequence[int]], options: ConvEinsumOptions = ConvEinsumOptions()) -> Plan:
    """``make_plan`` memoised on (equation, shapes, options)."""
    key = plan_key(equation, shapes, options)
    plan = PLAN_CACHE.get(key)
    if plan is None:
        plan = make_plan(equation, shapes, options)
        PLAN_CACHE.put(key, plan)
    return plan


def clear_plan_cache() -> None:
    """Forget every cached plan (path-searched and measured)."""
    PLAN_CACHE.clear()
