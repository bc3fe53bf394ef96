"""``optimize="measure"`` on tensorial layers: the evaluation order timed per input shape (issue 17, item 3).

In training the layer times conv_einsum's candidates (the FLOP-optimal path, reconstruct-first = "dense-first",
the cheapest other trees) forward + backward once per input shape, when the plan is made, and fixes the winner's
path in the expression. Timings are faked where a test needs a given winner (``zoo.conv_einsum.measure.time_run``
patched); every result is checked against the dense convolution with the reconstructed kernel.
"""

from __future__ import annotations

from typing import Callable, List

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

import zoo.conv_einsum.measure as measure_mod
from zoo.conv_einsum import clear_plan_cache, conv_einsum_path
from zoo.conv_einsum.sequencer import linear_to_masks
from zoo_tnn.layers import TensorialConv2d, TensorialLinear, _reconstruct_first_path

D = torch.float64


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    """An empty plan cache (measured plans are shared between layers of equal shapes), one timed repetition."""
    clear_plan_cache()
    monkeypatch.setattr(measure_mod, "MEASURE_REPEATS", 1)
    yield
    clear_plan_cache()


def _fake_timer(monkeypatch: pytest.MonkeyPatch, fastest: Callable[[object], bool]) -> List[int]:
    """Patch the timer: a run of a plan for which ``fastest(plan)`` holds takes 1 ms, every other 1 s (each still
    runs). Returns a one-element list counting the timed runs."""
    calls = [0]
    real_runner = measure_mod._runner

    def runner(plan: object, *args: object) -> Callable[[], None]:
        run = real_runner(plan, *args)  # type: ignore[arg-type]
        run.plan = plan  # type: ignore[attr-defined]
        return run

    def timer(fn: Callable[[], None], device: torch.device) -> float:
        calls[0] += 1
        fn()
        return 1e-3 if fastest(fn.plan) else 1.0  # type: ignore[attr-defined]

    monkeypatch.setattr(measure_mod, "_runner", runner)
    monkeypatch.setattr(measure_mod, "time_run", timer)
    return calls


def _rebuilds_first(path, n: int) -> bool:
    """Whether ``path`` (over the input, operand 0, and n - 1 factors) contracts every factor into the kernel
    first and ends with one convolution of the input with it."""
    return set(linear_to_masks([tuple(s) for s in path], n)[-1]) == {1, (1 << n) - 2}


def _layer() -> TensorialConv2d:
    torch.manual_seed(0)
    return TensorialConv2d(12, 8, 3, padding=1, stride=2, decomposition="mcp", rate=0.3, optimize="measure", dtype=D)


def _check_against_dense(layer: TensorialConv2d, x: torch.Tensor) -> None:
    """Output and every gradient (input, factors, bias) equal those of F.conv2d with the reconstructed kernel."""
    xa = x.clone().requires_grad_()
    y = layer(xa)
    g = torch.randn_like(y)
    y.backward(g)
    got = [xa.grad] + [p.grad for p in layer.factor_list()] + [layer.bias.grad]
    xb = x.clone().requires_grad_()
    factors = [p.detach().clone().requires_grad_() for p in layer.factor_list()]
    bias = layer.bias.detach().clone().requires_grad_()
    kernel = torch.einsum(layer.network.kernel_equation, *factors).reshape(8, 12, 3, 3)
    ref = F.conv2d(xb, kernel, bias, stride=2, padding=1)
    ref.backward(g)
    torch.testing.assert_close(y, ref)
    for a, b in zip(got, [xb.grad] + [f.grad for f in factors] + [bias.grad]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("winner", ["dense-first", "flop-optimal"])
def test_training_runs_the_fastest_measured_order_once_per_shape(winner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = _layer()
    n = 1 + len(layer.network.factors)

    def fastest(plan: object) -> bool:
        return _rebuilds_first(plan.info.path, n) == (winner == "dense-first")  # type: ignore[attr-defined]

    calls = _fake_timer(monkeypatch, fastest)
    x = torch.randn(3, 12, 9, 9, dtype=D)
    _check_against_dense(layer, x)
    first = calls[0]
    assert first >= 2  # at least two candidates timed
    ((key, choice),) = layer._plans.items()
    assert choice.kind == "measured" and key[1][0] == "train"
    assert _rebuilds_first(choice.expression.path, n) == (winner == "dense-first")
    ((_, costs),) = layer.path_costs.items()
    assert costs["chosen"] == "measured" and costs["measured"] == choice.expression.info.opt_cost
    if winner == "dense-first":  # the cheapest rebuild-first tree: at most the layer's own reconstruct-first cost
        assert costs["measured"] <= costs["reconstruct"]
    layer.zero_grad()
    _check_against_dense(layer, x)  # same shape: the plan is reused, nothing timed
    assert calls[0] == first and len(layer._plans) == 1
    layer.zero_grad()
    _check_against_dense(layer, torch.randn(5, 12, 9, 9, dtype=D))  # another batch size: timed anew
    assert calls[0] > first and len(layer._plans) == 2


def test_the_reconstruct_first_order_is_among_the_timed_candidates() -> None:
    """conv_einsum's "dense-first" candidate rebuilds the kernel from the factors, then runs one convolution with
    the input (its last step), in the cheapest such order: never costlier than the layer's reconstruct-first path."""
    layer = _layer()
    x_shape = (3, *(m.size for m in layer.network.in_modes), 9, 9)
    shapes = [x_shape] + [f.shape for f in layer.network.factors]
    geometry = dict(stride={"h": 2, "w": 2}, padding={"h": 1, "w": 1}, dilation={"h": 1, "w": 1})
    _, info = conv_einsum_path(layer.network.equation, *shapes, optimize="measure", **geometry)
    dense_first = [m for m in info.measured if "dense-first" in m.label]
    assert len(dense_first) == 1  # and it ran: repeated, or stopped after a slow warm-up (not skipped by a limit)
    assert dense_first[0].seconds is not None or dense_first[0].note.startswith("warm-up")
    n = len(shapes)
    assert _rebuilds_first(dense_first[0].path, n)
    _, rec = conv_einsum_path(layer.network.equation, *shapes, optimize=_reconstruct_first_path(layer.network),
                              **geometry)
    assert dense_first[0].cost <= rec.opt_cost


def test_inference_keeps_the_cached_kernel_choice_and_times_the_factorised_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """In eval mode "measure" still chooses between the cached dense kernel and the factorised path by their
    multiply-adds; only the factorised path's order is timed (forward only)."""
    calls = _fake_timer(monkeypatch, lambda plan: True)
    layer = _layer().eval()
    x = torch.randn(2, 12, 9, 9, dtype=D)
    with torch.no_grad():
        y = layer(x)
    torch.testing.assert_close(y, layer.to_dense()(x))
    ((_, costs),) = layer.inference_costs.items()
    ((_, choice),) = layer._plans.items()
    assert choice.kind == costs["chosen"]
    assert (calls[0] > 0) == (costs["chosen"] == "factorized")
    layer.path_ratio = 1e6  # factorised whatever the costs: its order is measured
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.to_dense()(x))
    assert calls[0] > 0 and next(iter(layer._plans.values())).kind == "factorized"


def test_linear_measured_training_matches_dense() -> None:
    torch.manual_seed(1)
    lin = TensorialLinear(24, 20, decomposition="mtt", rate=0.4, optimize="measure", dtype=D)
    x = torch.randn(6, 24, dtype=D, requires_grad=True)
    y = lin(x)
    y.square().sum().backward()
    xr = x.detach().clone().requires_grad_()
    ref = F.linear(xr, lin.weight.detach(), lin.bias.detach())
    ref.square().sum().backward()
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(x.grad, xr.grad)
    assert next(iter(lin._plans.values())).kind == "measured"


def test_compiled_measured_layer_has_no_graph_break() -> None:
    """The timing runs in plain Python when dynamo asks for the plan; the traced forward only sees a fixed path."""
    layer = _layer().float()
    x = torch.randn(3, 12, 9, 9)
    eager = _layer().float()
    eager.load_state_dict(layer.state_dict())
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(layer, backend="aot_eager", dynamic=False)
    out = compiled(x)
    out.square().mean().backward()
    ref = eager(x)
    ref.square().mean().backward()
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for p, q in zip(layer.parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
    assert next(iter(layer._plans.values())).kind == "measured"


def test_autotuning_makes_auto_layers_measure_and_is_part_of_the_plan_key() -> None:
    from zoo.conv_einsum import set_autotune

    torch.manual_seed(2)
    layer = TensorialConv2d(12, 8, 3, padding=1, decomposition="mtt", rate=0.3, dtype=D)
    x = torch.randn(2, 12, 9, 9, dtype=D)
    y = layer(x)
    try:
        set_autotune(True)
        torch.testing.assert_close(layer(x), y)
    finally:
        set_autotune(None)
    kinds = {key[1]: choice.kind for key, choice in layer._plans.items()}
    assert kinds[("train", False, False)] in ("factorized", "reconstruct")
    assert kinds[("train", True, False)] == "measured"
