"""The optimal sequencer: cost model and pairwise path search for conv_einsum networks.

Cost of one pairwise step ``A, B -> C`` (multiply-adds): the product over all letters of A and B of a
per-letter factor, counted three times as in the dissertation (Sec. 3.4.2): the forward product and the
two backward products dL/dA and dL/dB.  Per-letter factors:

- ordinary letter (contraction, batch, outer): its size;
- convolution of data (length N, already padded or not) with kernel (length K) giving length M:
  forward and dL/dkernel use M*K, dL/ddata uses N_padded*K;
- full convolution of two kernels (lengths K1, K2): K1*K2 in all three.

Paths are in opt_einsum's linear format (a list of index pairs; each result is appended at the end).

Path methods live in a table (``PATH_METHODS``), as opt_einsum's ``paths`` registry: a method is a function
``(network, memory_limit) -> path``; ``register_path_method`` adds one, ``get_path_method`` looks one up and
names the known ones when it is missing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import opt_einsum as oe

from .modes import Problem, resolve_problem
from .parse import ConvEinsumError, parse_equation

Path = list[tuple[int, int]]
AUTO_OPTIMAL_MAX = 8  # "auto" is exhaustive (dynamic programming over subsets) up to this many operands
OPTIMAL_MAX = 12
# "auto" also charges every element a step reads or writes (x3: forward and both gradients) this many
# multiply-adds: steps with tiny contractions are memory-bound (a 586-batch of 8x8 matmuls runs ~10x below
# a large matmul per MAC), so MAC counts alone favour paths with huge intermediates
AUTO_TRAFFIC_MACS = 16


@dataclass(frozen=True)
class StepCost:
    """Multiply-adds of one pairwise step: forward only, and forward + both backward products."""

    forward: int
    training: int


class Network:
    """The operands of a Problem as letter sets, with sizes and costs of any subset of operands.

    inputs: letter set of every operand after single-operand preprocessing (diagonals, sums).
    backward: whether a step's cost counts its two backward products (training) or the forward one only.
    Subsets are bit masks over operand indices.
    """

    def __init__(self, problem: Problem, inputs: Sequence[frozenset[str]], backward: bool = True):
        self.problem = problem
        self.backward = backward
        self.inputs = tuple(inputs)
        self.n = len(self.inputs)
        self.output = frozenset(problem.equation.output)
        holders: dict[str, int] = {}
        for i, letters in enumerate(self.inputs):
            for c in letters:
                holders[c] = holders.get(c, 0) | (1 << i)
        self.holders = holders
        self._kept: dict[int, frozenset[str]] = {}
        self._members: dict[int, frozenset[int]] = {}

    @property
    def full(self) -> int:
        return (1 << self.n) - 1

    def members(self, mask: int) -> frozenset[int]:
        """Operand indices in ``mask``."""
        got = self._members.get(mask)
        if got is None:
            got = frozenset(i for i in range(self.n) if mask >> i & 1)
            self._members[mask] = got
        return got

    def kept(self, mask: int) -> frozenset[str]:
        """Letters of the intermediate built from ``mask``: those still needed by the output or other operands."""
        got = self._kept.get(mask)
        if got is None:
            letters = set().union(*(self.inputs[i] for i in self.members(mask)))
            got = frozenset(c for c in letters if c in self.output or self.holders[c] & ~mask)
            self._kept[mask] = got
        return got

    def letter_size(self, letter: str, mask: int) -> int:
        return self.problem.size(letter, self.members(mask))

    def size(self, mask: int) -> int:
        """Number of elements of the intermediate built from ``mask``."""
        return math.prod(self.letter_size(c, mask) for c in self.kept(mask))

    def pair_cost(self, m1: int, m2: int) -> StepCost:
        """Cost of combining the intermediates of two disjoint masks."""
        l1, l2 = self.kept(m1), self.kept(m2)
        f = g1 = g2 = 1
        for c in l1 | l2:
            mode = self.problem.modes.get(c)
            if mode is None or c not in l1 or c not in l2:
                n = self.letter_size(c, m1 if c in l1 else m2)
                f, g1, g2 = f * n, g1 * n, g2 * n
                continue
            s1, s2 = self.members(m1), self.members(m2)
            a, b, out = mode.length(s1), mode.length(s2), mode.length(s1 | s2)
            if mode.data in s1 or mode.data in s2:
                data_first = mode.data in s1
                data_set, data_len, k = (s1, a, b) if data_first else (s2, b, a)
                padded = data_len + (sum(mode.pad) if not any(i in data_set for i in mode.kernels) else 0)
                f *= out * k
                g1 *= (padded if data_first else out) * k
                g2 *= (out if data_first else padded) * k
            else:
                f, g1, g2 = f * a * b, g1 * a * b, g2 * a * b
        return StepCost(forward=f, training=f + g1 + g2)

    def step_cost(self, m1: int, m2: int) -> int:
        """The multiply-adds a path search counts for one step: training (forward + backward) or forward only."""
        cost = self.pair_cost(m1, m2)
        return cost.training if self.backward else cost.forward

    def pair_objective(self, m1: int, m2: int, traffic: int) -> int:
        """What a path search minimises for one step: ``step_cost`` + ``traffic`` x (elements read + written),
        x3 when the backward products count (each gradient reads and writes as much again)."""
        moved = self.size(m1) + self.size(m2) + self.size(m1 | m2)
        return self.step_cost(m1, m2) + (3 if self.backward else 1) * traffic * moved

    @classmethod
    def from_sets(cls, inputs: Sequence[Sequence[str]], output: Sequence[str], size_dict: dict[str, int],
                  backward: bool = True) -> "Network":
        """A network without convolution letters, from opt_einsum's (inputs, output, size_dict)."""
        subs = ["".join(sorted(s)) for s in inputs]
        eq = parse_equation(",".join(subs) + "->" + "".join(sorted(output)), len(subs))
        shapes = [tuple(size_dict[c] for c in sub) for sub in subs]
        return cls(resolve_problem(eq, shapes), [frozenset(s) for s in subs], backward)


def ssa_tree_to_linear(ssa: Sequence[tuple[int, int]]) -> Path:
    """Convert a static-single-assignment path to opt_einsum's linear format."""
    return [tuple(int(i) for i in step) for step in oe.paths.ssa_to_linear(list(ssa))]  # type: ignore[misc]


def linear_to_masks(path: Sequence[Sequence[int]], n: int) -> list[tuple[int, int]]:
    """Validate a linear path for ``n`` operands and return each step as a pair of masks."""
    current = [1 << i for i in range(n)]
    steps: list[tuple[int, int]] = []
    for k, step in enumerate(path):
        step = tuple(step)
        if len(step) != 2 or len(set(step)) != 2:
            raise ConvEinsumError(f"path step {k} is {step!r}; conv_einsum contracts exactly two distinct operands per step")
        if not all(isinstance(i, int) and 0 <= i < len(current) for i in step):
            raise ConvEinsumError(f"path step {k} {step!r} refers to operands outside 0..{len(current) - 1}")
        i, j = sorted(step, reverse=True)
        a, b = current.pop(i), current.pop(j)
        steps.append((b, a))
        current.append(a | b)
    if len(current) != 1:
        raise ConvEinsumError(f"path {list(path)!r} leaves {len(current)} operands; it needs {max(n - 1, 0)} steps")
    return steps


def path_cost(net: Network, path: Sequence[Sequence[int]]) -> tuple[StepCost, int]:
    """Total cost of ``path`` and its largest intermediate (elements, final result included)."""
    fwd = train = 0
    largest = 0
    for m1, m2 in linear_to_masks(path, net.n):
        c = net.pair_cost(m1, m2)
        fwd, train = fwd + c.forward, train + c.training
        largest = max(largest, net.size(m1 | m2))
    return StepCost(fwd, train), largest


def _splits(mask: int) -> Iterator[tuple[int, int]]:
    """Every split of ``mask`` into (left, right), both non-empty, left holding the lowest operand."""
    low = mask & -mask
    rest = mask ^ low
    sub = rest
    while True:
        right = rest ^ sub
        if right:
            yield low | sub, right
        if sub == 0:
            return
        sub = (sub - 1) & rest


def naive_path(n: int) -> Path:
    """Left-to-right evaluation: ((x0 x1) x2) x3 ..."""
    if n < 2:
        return []
    ssa = [(0, 1)] + [(i, n + i - 2) for i in range(2, n)]
    return ssa_tree_to_linear(ssa)


class ConvPathOptimizer(oe.paths.PathOptimizer):
    """An opt_einsum PathOptimizer whose cost counts convolutions and (with ``backward``) backward products.

    ``method``: "optimal" (dynamic programming over all subsets: the exact minimum over every pairwise
    tree, outer products included), "greedy" (cheapest pair first) or "auto" (optimal up to
    AUTO_OPTIMAL_MAX operands). ``memory_limit`` bounds every intermediate except the final result.
    ``traffic``: multiply-adds charged per element a step reads or writes (0: pure MAC counts).

    As every opt_einsum PathOptimizer it is called with ``(inputs, output, size_dict, memory_limit)`` and
    returns a path, so it can be handed to ``opt_einsum.contract_path(..., optimize=...)``. Without a
    ``network`` it plans the plain einsum those arguments describe. With a ``network`` (a conv_einsum
    problem, whose convolution letters have different sizes in different operands, which a size_dict cannot
    say) the call's inputs and output must be that network's letter sets, and the sizes are the network's.
    A ``memory_limit`` given to the call replaces the one given at construction.
    """

    def __init__(self, network: Network | None = None, method: str = "auto", memory_limit: int | None = None,
                 traffic: int = 0, backward: bool = True):
        if method not in ("auto", "optimal", "greedy"):
            raise ConvEinsumError(f"unknown search method {method!r}; expected 'auto', 'optimal' or 'greedy'")
        self.network = network
        self.method = method
        self.memory_limit = memory_limit
        self.traffic = traffic
        self.backward = backward

    def __call__(self, inputs: Sequence[Sequence[str]], output: Sequence[str], size_dict: dict[str, int],
                 memory_limit: int | None = None) -> Path:
        net = self.network
        if net is None:
            net = Network.from_sets(inputs, output, size_dict, self.backward)
        elif [frozenset(s) for s in inputs] != list(net.inputs) or frozenset(output) != net.output:
            raise ConvEinsumError(
                f"ConvPathOptimizer was built for inputs {[''.join(sorted(s)) for s in net.inputs]} -> "
                f"{''.join(sorted(net.output))}, called with {[''.join(sorted(s)) for s in inputs]} -> "
                f"{''.join(sorted(output))}; build it without a network to plan a plain einsum"
            )
        limit = self.memory_limit if memory_limit is None else memory_limit
        return ConvPathOptimizer(net, self.method, limit, self.traffic).search()

    def search(self) -> Path:
        """The path for this optimizer's own network."""
        if self.network is None:
            raise ConvEinsumError("ConvPathOptimizer.search needs a network; call it with (inputs, output, size_dict)")
        n = self.network.n
        if n < 2:
            return []
        method = self.method
        if method == "auto":
            method = "optimal" if n <= AUTO_OPTIMAL_MAX else "greedy"
        if method == "optimal":
            if n > OPTIMAL_MAX:
                raise ConvEinsumError(f"optimize='optimal' is limited to {OPTIMAL_MAX} operands, got {n}; use 'greedy' or 'auto'")
            return self._optimal()
        return self._greedy()

    def _cost(self, m1: int, m2: int) -> int:
        if self.traffic:
            return self.network.pair_objective(m1, m2, self.traffic)
        return self.network.step_cost(m1, m2)

    def _fits(self, mask: int) -> bool:
        net = self.network
        return self.memory_limit is None or mask == net.full or net.size(mask) <= self.memory_limit

    def _no_path(self) -> ConvEinsumError:
        return ConvEinsumError(
            f"no pairwise path keeps every intermediate within memory_limit={self.memory_limit} elements"
        )

    def _table(self) -> dict[int, tuple[int, int, int]]:
        """Dynamic programming over subsets: mask -> (best cost, left mask, right mask) of every fitting subset."""
        net = self.network
        n = net.n
        best: dict[int, tuple[int, int, int]] = {1 << i: (0, 0, 0) for i in range(n)}
        for size in range(2, n + 1):
            for combo in itertools.combinations(range(n), size):
                mask = sum(1 << i for i in combo)
                if not self._fits(mask):
                    continue
                found: tuple[int, int, int] | None = None
                for left, right in _splits(mask):
                    if left in best and right in best:
                        cost = best[left][0] + best[right][0] + self._cost(left, right)
                        if found is None or cost < found[0]:
                            found = (cost, left, right)
                if found is not None:
                    best[mask] = found
        return best

    def _build(self, best: dict[int, tuple[int, int, int]], top: tuple[int, int]) -> Path:
        """The linear path of the tree whose last step joins ``top`` and whose subtrees come from ``best``."""
        n = self.network.n
        ssa: list[tuple[int, int]] = []
        ids: dict[int, int] = {1 << i: i for i in range(n)}

        def build(mask: int) -> int:
            if mask not in ids:
                left, right = best[mask][1:] if mask != self.network.full else top
                a, b = build(left), build(right)
                ssa.append((a, b))
                ids[mask] = n + len(ssa) - 1
            return ids[mask]

        build(self.network.full)
        return ssa_tree_to_linear(ssa)

    def _optimal(self) -> Path:
        best = self._table()
        if self.network.full not in best:
            raise self._no_path()
        return self._build(best, best[self.network.full][1:])

    def final_splits(self) -> list[tuple[int, tuple[int, int], Path]]:
        """For every last step (left, right) of the full set: (cost, split, cheapest path ending with it), cheapest first.

        The first entry is the "optimal" path; the others are the cheapest trees with a different last step
        (e.g. "contract every kernel first, then one convolution with the data"). Exhaustive: up to OPTIMAL_MAX.
        """
        net = self.network
        if net.n > OPTIMAL_MAX:
            raise ConvEinsumError(f"final_splits is limited to {OPTIMAL_MAX} operands, got {net.n}")
        if net.n < 2:
            return []
        best = self._table()
        out = []
        for left, right in _splits(net.full):
            if left in best and right in best:
                cost = best[left][0] + best[right][0] + self._cost(left, right)
                out.append((cost, (left, right), self._build(best, (left, right))))
        out.sort(key=lambda item: item[0])
        return out

    def _greedy(self) -> Path:
        net = self.network
        current = [1 << i for i in range(net.n)]
        path: Path = []
        while len(current) > 1:
            choice: tuple[tuple[int, int], int, int] | None = None
            for i, j in itertools.combinations(range(len(current)), 2):
                merged = current[i] | current[j]
                if not self._fits(merged):
                    continue
                key = (self._cost(current[i], current[j]), net.size(merged))
                if choice is None or key < choice[0]:
                    choice = (key, i, j)
            if choice is None:
                raise self._no_path()
            _, i, j = choice
            path.append((i, j))
            merged = current[i] | current[j]
            del current[j], current[i]
            current.append(merged)
        return path


# ---- the path-method table -------------------------------------------------------------------------------

PathMethod = Callable[[Network, "int | None"], Path]
PATH_METHODS: dict[str, PathMethod] = {}


def register_path_method(name: str, method: PathMethod, replace: bool = False) -> None:
    """Make ``optimize=name`` call ``method(network, memory_limit) -> path`` (opt_einsum's linear format).

    ``network`` is a :class:`Network` (letter sets, sizes and ``pair_cost`` of any subset of operands);
    ``memory_limit`` is the largest allowed intermediate in elements, or None. An existing name (a built-in
    included) is replaced only with ``replace=True``; "measure" is reserved (it times paths on the operands).
    """
    if not isinstance(name, str) or not name or name == "measure":
        raise ConvEinsumError(f"a path method needs a non-empty name other than 'measure', got {name!r}")
    if not callable(method):
        raise ConvEinsumError(f"path method {name!r} must be callable, got {type(method).__name__}")
    if name in PATH_METHODS and not replace:
        raise ConvEinsumError(f"path method {name!r} is already registered; pass replace=True to replace it")
    PATH_METHODS[name] = method


def unregister_path_method(name: str) -> None:
    """Remove a registered path method (a no-op for unknown names)."""
    PATH_METHODS.pop(name, None)


def path_methods() -> tuple[str, ...]:
    """The names ``optimize`` accepts besides "measure" and explicit paths."""
    return tuple(PATH_METHODS)


def get_path_method(name: str) -> PathMethod:
    """The registered method ``name``; ConvEinsumError naming the known ones when there is none."""
    method = PATH_METHODS.get(name)
    if method is None:
        known = ", ".join(repr(k) for k in (*PATH_METHODS, "measure"))
        raise ConvEinsumError(f"unknown optimize={name!r}; known path methods: {known}, or a path (list of index pairs)")
    return method


def _auto(net: Network, limit: int | None) -> Path:
    """Optimal up to AUTO_OPTIMAL_MAX operands, else greedy; charges memory traffic (AUTO_TRAFFIC_MACS per
    element) and never makes a larger intermediate than left-to-right evaluation when that is possible."""
    if net.n > 2:
        steps = linear_to_masks(naive_path(net.n), net.n)
        naive_largest = max(net.size(a | b) for a, b in steps[:-1])
        try:
            return ConvPathOptimizer(net, "auto", min(limit or naive_largest, naive_largest), AUTO_TRAFFIC_MACS).search()
        except ConvEinsumError:
            pass  # greedy may miss the bound: fall back to the user's limit alone
    return ConvPathOptimizer(net, "auto", limit, AUTO_TRAFFIC_MACS).search()


register_path_method("auto", _auto)
register_path_method("optimal", lambda net, limit: ConvPathOptimizer(net, "optimal", limit).search())
register_path_method("greedy", lambda net, limit: ConvPathOptimizer(net, "greedy", limit).search())
register_path_method("naive", lambda net, limit: naive_path(net.n))
