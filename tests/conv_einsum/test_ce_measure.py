"""optimize="measure": measured path selection among a few candidates, cached like every other plan.

Timing runs are counted (and, where a test needs a deterministic winner, faked) by patching
``zoo.conv_einsum.measure.time_run``; no assertion depends on wall time.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

import zoo.conv_einsum.measure as measure_mod
from .ce_reference import reference_conv_einsum
from zoo.conv_einsum import clear_plan_cache, conv_einsum, conv_einsum_path, set_autotune
from zoo.conv_einsum.atomic import ConvStep
from zoo.conv_einsum import ConvEinsumOptions
from zoo.conv_einsum.plan import PLAN_CACHE, make_setup, plan_for_path

N, S1, S2, H, W, K = 2, 2, 3, 6, 5, 3


def rnd(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def layers(gen: torch.Generator) -> list[tuple[str, str, torch.Tensor, list[torch.Tensor]]]:
    """(name, equation, x, factors) of small CP / Tucker / TT / TR and reshaped CP / TT / TR layers."""
    s, t, r = S1 * S2, 5, 2
    x = rnd(gen, N, s, H, W)
    xr = x.reshape(N, S1, S2, H, W)
    return [
        ("cp", "nshw,rt,rs,rh,rw->nthw|hw", x, [rnd(gen, r, t), rnd(gen, r, s), rnd(gen, r, K), rnd(gen, r, K)]),
        ("tucker", "nshw,tp,sq,pqhw->nthw|hw", x, [rnd(gen, t, r), rnd(gen, s, 3), rnd(gen, r, 3, K, K)]),
        ("tt", "nshw,ta,asb,bhc,cw->nthw|hw", x, [rnd(gen, t, r), rnd(gen, r, s, 3), rnd(gen, 3, K, r), rnd(gen, r, K)]),
        ("tr", "nshw,dta,asb,bhc,cwd->nthw|hw", x,
         [rnd(gen, r, t, 3), rnd(gen, 3, s, r), rnd(gen, r, K, 2), rnd(gen, 2, K, r)]),
        ("rcp", "nxyhw,rux,rvy,rhw->nuvhw|hw", xr, [rnd(gen, r, 2, S1), rnd(gen, r, 3, S2), rnd(gen, r, K, K)]),
        ("rtt", "nxyhw,uxa,avyb,bhw->nuvhw|hw", xr, [rnd(gen, 2, S1, r), rnd(gen, r, 3, S2, 3), rnd(gen, 3, K, K)]),
        ("rtr", "nxyhw,cuxa,avyb,bhwc->nuvhw|hw", xr,
         [rnd(gen, 2, 2, S1, r), rnd(gen, r, 3, S2, 3), rnd(gen, 3, K, K, 2)]),
    ]


NAMES = [lay[0] for lay in layers(torch.Generator().manual_seed(0))]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    """Empty plan cache, one repetition per candidate, one thread, autotune following the (unset) environment."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    clear_plan_cache()
    monkeypatch.setattr(measure_mod, "MEASURE_REPEATS", 1)
    monkeypatch.delenv(measure_mod.AUTOTUNE_ENV, raising=False)
    set_autotune(None)
    yield
    set_autotune(None)
    clear_plan_cache()
    torch.set_num_threads(threads)


def count_runs(monkeypatch: pytest.MonkeyPatch, fake: float | None = None) -> list[int]:
    """Patch the timer; returns a one-element list holding the number of timed runs (fake: constant seconds)."""
    calls = [0]
    real: Callable = measure_mod.time_run

    def timer(fn: Callable[[], None], device: torch.device) -> float:
        calls[0] += 1
        seconds = real(fn, device)
        return seconds if fake is None else fake

    monkeypatch.setattr(measure_mod, "time_run", timer)
    return calls


def grads_of(eq: str, x: torch.Tensor, factors: list[torch.Tensor], fn: Callable, **opts) -> tuple:
    fs = [f.detach().clone().requires_grad_() for f in factors]
    xx = x.detach().clone().requires_grad_()
    y = fn(eq, xx, *fs, **opts)
    y.backward(torch.ones_like(y))
    return (y.detach(), xx.grad, *[f.grad for f in fs])


@pytest.mark.parametrize("name", NAMES)
def test_measure_equals_reference_and_optimal(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(NAMES.index(name))
    _, eq, x, factors = next(lay for lay in layers(gen) if lay[0] == name)
    calls = count_runs(monkeypatch)
    opts = dict(stride=2, padding=1)
    got = grads_of(eq, x, factors, conv_einsum, optimize="measure", **opts)
    assert calls[0] > 0
    optimal = grads_of(eq, x, factors, conv_einsum, optimize="optimal", **opts)
    ref = grads_of(eq, x, factors, reference_conv_einsum, **opts)
    for a, b, c in zip(got, optimal, ref):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)


def test_cache_hit_on_second_call(monkeypatch: pytest.MonkeyPatch) -> None:
    _, eq, x, factors = layers(torch.Generator().manual_seed(1))[2]
    fs = [f.requires_grad_() for f in factors]
    calls = count_runs(monkeypatch)
    y1 = conv_einsum(eq, x, *fs, padding=1, optimize="measure")
    first = calls[0]
    assert first >= 2  # at least two candidates, one warm-up + one repetition each
    hits = PLAN_CACHE.hits
    y2 = conv_einsum(eq, x, *fs, padding=1, optimize="measure")
    assert calls[0] == first and PLAN_CACHE.hits == hits + 1
    torch.testing.assert_close(y1, y2)
    # another requires_grad pattern (or no grad at all) is another key: measured once more
    with torch.no_grad():
        conv_einsum(eq, x, *fs, padding=1, optimize="measure")
    assert calls[0] > first


def test_chosen_path_is_a_timed_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    _, eq, x, factors = layers(torch.Generator().manual_seed(2))[5]
    _, info = conv_einsum_path(eq, x, *factors, padding=1, optimize="measure")
    timed = [m for m in info.measured if m.seconds is not None]
    assert len(timed) >= 2 and info.path in [m.path for m in timed]
    assert min(timed, key=lambda m: m.seconds).path == info.path
    labels = " ".join(m.label for m in info.measured)
    for word in ("flop-optimal", "left-to-right", "dense-first", "next-cheapest-1"):
        assert word in labels
    text = str(info)
    assert "Measured candidates" in text and all(m.label in text for m in info.measured)
    # equal times: the cheapest candidate by the cost model wins
    clear_plan_cache()
    count_runs(monkeypatch, fake=1.0)
    _, info = conv_einsum_path(eq, x, *factors, padding=1, optimize="measure")
    timed = [m for m in info.measured if m.seconds is not None]
    assert info.path == min(timed, key=lambda m: m.cost).path


def test_shapes_only_and_dense_first_layout() -> None:
    eq = "nxyzij,uxa,avyb,bwzc,cij->nuvwij|ij"
    shapes = [(1, 2, 2, 2, 8, 8), (2, 2, 3), (3, 2, 2, 3), (3, 2, 2, 2), (2, 3, 3)]
    _, info = conv_einsum_path(eq, *shapes, padding=1, optimize="measure")
    dense = next(m for m in info.measured if "dense-first" in m.label)
    assert dense.path[-1] == (0, 1)
    # the rebuilt kernel comes out as (out channels, in channels, kh, kw): the conv reads it without a copy
    plan = plan_for_path(make_setup(eq, shapes, ConvEinsumOptions(padding=1)), dense.path)
    conv = plan.steps[-1][2]
    assert isinstance(conv, ConvStep) and conv.w_perm == tuple(range(len(conv.w_perm)))
    assert conv.x_perm == tuple(range(len(conv.x_perm))) and plan.final_perm is None


def test_switch_and_env_make_auto_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    _, eq, x, factors = layers(torch.Generator().manual_seed(3))[0]
    calls = count_runs(monkeypatch)
    conv_einsum(eq, x, *factors, padding=1)
    assert calls[0] == 0
    set_autotune(True)
    conv_einsum(eq, x, *factors, padding=1)
    assert calls[0] > 0
    set_autotune(False)
    monkeypatch.setenv(measure_mod.AUTOTUNE_ENV, "1")
    clear_plan_cache()
    before = calls[0]
    conv_einsum(eq, x, *factors, padding=1)
    assert calls[0] == before  # the switch wins over the environment
    set_autotune(None)
    conv_einsum(eq, x, *factors, padding=1)
    assert calls[0] > before
    with pytest.raises(TypeError, match="True, False or None"):
        set_autotune("yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("checkpoint", [False, True])
def test_measuring_leaves_no_rng_or_autograd_state(checkpoint: bool) -> None:
    _, eq, x, factors = layers(torch.Generator().manual_seed(4))[3]
    fs = [f.requires_grad_() for f in factors]
    state = torch.get_rng_state()
    y = conv_einsum(eq, x, *fs, padding=1, optimize="measure", checkpoint=checkpoint)
    assert torch.equal(state, torch.get_rng_state())
    assert all(f.grad is None for f in fs) and torch.is_grad_enabled()
    y.sum().backward()
    want = grads_of(eq, x, factors, conv_einsum, padding=1)
    for f, g in zip(fs, want[2:]):
        torch.testing.assert_close(f.grad, g)


def test_memory_limit_bounds_every_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    _, eq, x, factors = layers(torch.Generator().manual_seed(5))[6]
    limit = max(t.numel() for t in (x, *factors))
    _, info = conv_einsum_path(eq, x, *factors, padding=1, optimize="measure", memory_limit=limit)
    for m in info.measured:
        assert m.seconds is None or m.largest <= limit
    got = conv_einsum(eq, x, *factors, padding=1, optimize="measure", memory_limit=limit)
    torch.testing.assert_close(got, reference_conv_einsum(eq, x, *factors, padding=1))


def test_time_run_counts_cpu_time_with_one_thread_and_wall_time_otherwise() -> None:
    """With one torch thread on the CPU a call's time is the process's CPU time: a sleep (no CPU) counts ~0, a
    busy loop counts in full; with more threads it is wall time, the sleep included."""
    import time as _time

    cpu = torch.device("cpu")

    def nap() -> None:
        _time.sleep(0.05)

    def spin() -> None:
        end = _time.process_time() + 0.02
        while _time.process_time() < end:
            pass

    assert torch.get_num_threads() == 1  # the autouse fixture
    assert measure_mod.time_run(nap, cpu) < 0.01
    assert measure_mod.time_run(spin, cpu) >= 0.02
    torch.set_num_threads(2)
    try:
        assert measure_mod.time_run(nap, cpu) >= 0.05
    finally:
        torch.set_num_threads(1)
