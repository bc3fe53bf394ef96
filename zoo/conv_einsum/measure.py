"""Measured path selection, ``optimize="measure"`` (in the spirit of ``cudnn.benchmark``).

The sequencer minimises multiply-adds, but kernels differ a lot in throughput (on CPU a convolution with
few channels runs far below a dense one). On the first call for a key (equation, shapes, options, dtype,
device, which operands need gradients, checkpointing) a small candidate set is timed and the fastest plan
is cached in the shared plan cache; later calls pay the dict lookup. Candidates:

- ``flop-optimal``: the path ``optimize="auto"`` uses;
- ``left-to-right``: ``optimize="naive"``;
- ``dense-first``: contract every operand except the data first (rebuild the dense kernel, laid out for
  F.convNd), then one convolution with the data; only when one operand is the data of every conv letter
  (without conv letters: the largest operand);
- ``next-cheapest-k``: the cheapest trees by the cost model whose last step differs from those above.

``dense-first`` and ``next-cheapest-k`` need the exhaustive search (up to AUTO_OPTIMAL_MAX operands).
A candidate is not timed when its cost exceeds MAX_COST_RATIO x the FLOP-optimal cost, its largest
intermediate exceeds MAX_MEMORY_RATIO x the largest of (any input, the output, the FLOP-optimal path's
intermediates, the dense kernel), or it breaks ``memory_limit``. Each candidate runs forward (+ backward
when an operand requires grad) on detached clones of the operands: one warm-up (candidates slower than
PRUNE_RATIO x the fastest warm-up stop there), then MEASURE_REPEATS runs round-robin; the minimum wins (wall time;
process CPU time on the CPU with one torch thread, see ``time_run``).
``set_autotune(True)`` or the environment variable ZOO_CONV_EINSUM_AUTOTUNE=1 make ``"auto"`` measure.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import torch
from torch import Tensor

from .checkpoint import run_checkpointed
from .options import ConvEinsumOptions
from .plan import PLAN_CACHE, Measurement, Plan, Setup, choose_path, make_setup, plan_for_path, plan_key, with_measurements
from .sequencer import AUTO_OPTIMAL_MAX, ConvPathOptimizer, Path, linear_to_masks, naive_path, path_cost

AUTOTUNE_ENV = "ZOO_CONV_EINSUM_AUTOTUNE"
MEASURE_REPEATS = 3
NEXT_CHEAPEST = 2
MAX_COST_RATIO = 64
MAX_MEMORY_RATIO = 16
PRUNE_RATIO = 4.0
PRUNE_MIN_SECONDS = 5e-3

_autotune: bool | None = None


def set_autotune(enabled: bool | None) -> None:
    """Make ``optimize="auto"`` behave as ``"measure"`` (True), not (False), or follow ZOO_CONV_EINSUM_AUTOTUNE (None)."""
    global _autotune
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_autotune expects True, False or None, got {enabled!r}")
    _autotune = enabled


def autotune_enabled() -> bool:
    """Whether ``"auto"`` measures: the set_autotune value, else ZOO_CONV_EINSUM_AUTOTUNE in (1, true, yes, on)."""
    if _autotune is not None:
        return _autotune
    return os.environ.get(AUTOTUNE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def measures(optimize: Any) -> bool:
    """Whether a call with this ``optimize`` value selects its path by measurement."""
    return isinstance(optimize, str) and (optimize == "measure" or (optimize == "auto" and autotune_enabled()))


@dataclass(frozen=True)
class Candidate:
    """A labelled candidate path (labels of identical trees are joined with '+')."""

    label: str
    path: Path


def time_run(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of ``fn``: wall time, on CUDA synchronised before and after; on the CPU with one torch
    thread the process's CPU time (all the work runs on this thread, so that is the call's own time, without the
    waits for other processes on shared cores that make wall times swing). (Tests patch this to count runs.)"""
    cuda = device.type == "cuda"
    clock = time.process_time if device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter
    if cuda:
        torch.cuda.synchronize(device)
    t0 = clock()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return clock() - t0


def dense_data(setup: Setup) -> int | None:
    """The operand a "dense-first" path keeps for its last step, or None when there is no single data operand."""
    modes = setup.problem.modes
    if modes:
        datas = {m.data for m in modes.values()}
        return datas.pop() if len(datas) == 1 else None
    sizes = [math.prod(s) for s in setup.problem.shapes]
    return max(range(len(sizes)), key=lambda i: sizes[i]) if sizes else None


def candidate_paths(setup: Setup) -> list[Candidate]:
    """The candidate set (see the module docstring), FLOP-optimal first, without duplicate trees."""
    net = setup.net
    labels: dict[frozenset, list[str]] = {}
    paths: dict[frozenset, Path] = {}

    def tree(path: Path) -> frozenset:
        return frozenset(frozenset(step) for step in linear_to_masks(path, net.n))

    def add(label: str, path: Path) -> None:
        key = tree(path)
        paths.setdefault(key, path)
        labels.setdefault(key, []).append(label)

    add("flop-optimal", choose_path(net, "auto", setup.limit))
    if net.n >= 3:
        add("left-to-right", naive_path(net.n))
    if 3 <= net.n <= AUTO_OPTIMAL_MAX:
        splits = ConvPathOptimizer(net, "optimal", setup.limit).final_splits()
        data = dense_data(setup)
        dense = [path for _, split, path in splits if data is not None and 1 << data in split]
        if dense:
            add("dense-first", dense[0])
        fresh = [path for _, _, path in splits if tree(path) not in paths]
        for k, path in enumerate(fresh[:NEXT_CHEAPEST]):
            add(f"next-cheapest-{k + 1}", path)
    return [Candidate("+".join(labels[t]), p) for t, p in paths.items()]


def _largest_intermediate(setup: Setup, path: Path) -> int:
    """Largest intermediate of ``path`` except the final result (0 for a single step)."""
    steps = linear_to_masks(path, setup.net.n)
    return max((setup.net.size(a | b) for a, b in steps[:-1]), default=0)


def _skip_reason(setup: Setup, cand: Candidate, cost: int, largest: int, ref_cost: int, ref_size: int) -> str:
    if setup.limit is not None and largest > setup.limit:
        return f"intermediate {largest:.3g} > memory_limit {setup.limit:.3g}"
    if cost > MAX_COST_RATIO * ref_cost:
        return f"cost > {MAX_COST_RATIO}x flop-optimal"
    if largest > MAX_MEMORY_RATIO * ref_size:
        return f"intermediate > {MAX_MEMORY_RATIO}x reference size {ref_size:.3g}"
    return ""


def _runner(plan: Plan, operands: Sequence[Tensor], grads: Sequence[bool], checkpoint: bool) -> Callable[[], None]:
    """A closure running ``plan`` forward (+ backward to the operands in ``grads``) on detached clones."""
    clones = [t.detach().clone() for t in operands]
    leaves = [t.requires_grad_() for t, g in zip(clones, grads) if g]

    def run() -> None:
        if not leaves:
            with torch.no_grad():
                plan.run(*clones)
            return
        with torch.enable_grad():
            y = run_checkpointed(plan, tuple(clones)) if checkpoint else plan.run(*clones)
            torch.autograd.grad(y.sum(), leaves, allow_unused=True)

    return run


def measure(setup: Setup, operands: Sequence[Tensor], grads: Sequence[bool], checkpoint: bool) -> Plan:
    """Time the candidate paths on ``operands`` and return the fastest plan, its PathInfo listing every candidate."""
    t_start = time.perf_counter()
    cands = candidate_paths(setup)
    search = time.perf_counter() - t_start
    net = setup.net
    costs = [path_cost(net, c.path)[0].training if net.backward else path_cost(net, c.path)[0].forward
             for c in cands]
    largest = [_largest_intermediate(setup, c.path) for c in cands]
    data = dense_data(setup)
    kernel = net.size(net.full & ~(1 << data)) if data is not None and net.n >= 3 else 0
    ref_size = max([math.prod(s) for s in setup.problem.shapes] + [net.size(net.full), largest[0], kernel])
    notes = [_skip_reason(setup, c, costs[k], largest[k], costs[0], ref_size) if k else ""
             for k, c in enumerate(cands)]
    timed = [k for k, note in enumerate(notes) if not note]
    plans = {k: plan_for_path(setup, cands[k].path) for k in timed}
    seconds: dict[int, float] = {}
    if len(timed) > 1:
        device = operands[0].device
        runs = {k: _runner(plans[k], operands, grads, checkpoint) for k in timed}
        warm = {k: time_run(runs[k], device) for k in timed}
        fastest = min(warm.values())
        keep = [k for k in timed if warm[k] <= max(PRUNE_RATIO * fastest, PRUNE_MIN_SECONDS)]
        for k in timed:
            if k not in keep:
                notes[k] = f"warm-up {warm[k] * 1e3:.3g} ms > {PRUNE_RATIO:g}x fastest warm-up; not repeated"
        seconds = {k: math.inf for k in keep}
        for _ in range(MEASURE_REPEATS):
            for k in keep:
                seconds[k] = min(seconds[k], time_run(runs[k], device))
    elif timed:
        notes[timed[0]] = "only candidate within the limits; not timed"
    winner = min(seconds, key=lambda k: (seconds[k], costs[k])) if seconds else timed[0]
    rows = [Measurement(c.label, list(c.path), costs[k], largest[k], seconds.get(k), notes[k])
            for k, c in enumerate(cands)]
    return with_measurements(plans[winner], rows, time.perf_counter() - t_start, search)


def measured_plan(equation: str, operands: Sequence[Tensor], options: ConvEinsumOptions) -> Plan:
    """The measured plan for these operands, from the plan cache or measured now (then cached)."""
    shapes = [tuple(t.shape) for t in operands]
    grads = tuple(torch.is_grad_enabled() and t.requires_grad for t in operands)
    ref = operands[0] if operands else None
    options = options.replace(optimize="measure")
    key: Hashable = (plan_key(equation, shapes, options), ref.dtype if ref is not None else None,
                     ref.device if ref is not None else None, grads)
    plan = PLAN_CACHE.get(key)
    if plan is None:
        setup = make_setup(equation, shapes, options)
        plan = measure(setup, operands, grads, options.checkpoint)
        PLAN_CACHE.put(key, plan)
    return plan
