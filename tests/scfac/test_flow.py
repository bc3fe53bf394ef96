"""SC-Fac Residual Flow (7.7.3) against independent references: power iteration, dense Jacobians, round trips."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo_scfac.flow import FixedPointError, ResidualBlock, ResidualFlow, squeeze, unsqueeze
from zoo_scfac.layers import OrthoConv2d, reorthogonalize_


def _random_block(coeff: float = 0.9, seed: int = 0, **kwargs) -> ResidualBlock:
    """A float64 block with random (non-initial) orthogonal factors, biases and LipSwish slopes."""
    torch.manual_seed(seed)
    block = ResidualBlock(2, 6, 3, coeff, **kwargs).double()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, OrthoConv2d):
                m.reset_parameters("uniform")
                m.bias.normal_(0, 0.3)
        for name, p in block.named_parameters():
            if name.endswith(".b"):
                p.normal_(0, 1.5)
    return reorthogonalize_(block)


def _power_iteration(fn, x: torch.Tensor, iters: int = 100) -> float:
    """Largest singular value of the Jacobian of ``fn`` at ``x`` by power iteration on ``J^T J`` (jvp + vjp)."""
    u = torch.randn_like(x)
    u = u / u.norm()
    for _ in range(iters):
        _, ju = torch.autograd.functional.jvp(fn, x, u)
        _, jtju = torch.autograd.functional.vjp(fn, x, ju)
        u = jtju / jtju.norm()
    _, ju = torch.autograd.functional.jvp(fn, x, u)
    return ju.norm().item()


@pytest.mark.parametrize("coeff", [0.5, 0.9])
def test_lipschitz_bound_of_the_residual_branch(coeff):
    block = _random_block(coeff)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    sigma = _power_iteration(block.g, x)
    dense = torch.autograd.functional.jacobian(lambda v: block.g(v.view_as(x)).flatten(), x.flatten())
    assert sigma == pytest.approx(torch.linalg.matrix_norm(dense, 2).item(), rel=1e-4)  # power iteration converged
    assert sigma <= coeff * (1 + 1e-9)
    assert sigma > 0.1 * coeff  # g is not trivially small
    pairs = torch.randn(200, 2, 6, 6, dtype=torch.float64)
    diff = (block.g(pairs) - block.g(pairs.roll(1, 0))).flatten(1).norm(dim=1)
    assert (diff <= coeff * (pairs - pairs.roll(1, 0)).flatten(1).norm(dim=1) + 1e-12).all()


def test_coeff_must_be_below_one():
    with pytest.raises(ValueError, match="coeff"):
        ResidualBlock(2, 4, 3, coeff=1.0)


def test_block_inverse_recovers_the_input():
    block = _random_block(0.9, atol=1e-10, max_iter=500)
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    y, _ = block(x)
    assert (y - x).abs().max() > 1e-2  # the block is not the identity
    assert torch.allclose(block.inverse(y), x, atol=1e-8, rtol=0)


def test_non_convergence_is_reported():
    block = _random_block(0.9, atol=1e-12, max_iter=3)
    y, _ = block(torch.randn(2, 2, 6, 6, dtype=torch.float64))
    with pytest.raises(FixedPointError, match="did not converge"):
        block.inverse(y)


def test_exact_logdet_matches_slogdet_of_the_full_map():
    block = _random_block(0.9)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    exact = block.exact_logdet(x)
    for i in range(2):  # independent: Jacobian of F = x + g(x) through the public forward, not through g
        jac = torch.autograd.functional.jacobian(lambda v: block(v.view(1, 2, 4, 4))[0].flatten(), x[i].flatten())
        assert exact[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-10)
    assert exact.abs().min() > 1e-2


def _call_means(module: torch.nn.Module, x: torch.Tensor, generator: torch.Generator, calls: int = 300,
                batch: int = 8) -> torch.Tensor:
    """Batch means of the log-det estimate of ``x (1, ...)`` over independent calls (each call draws its own n)."""
    with torch.no_grad():
        return torch.stack([module(x.expand(batch, *x.shape[1:]), generator)[1].mean() for _ in range(calls)])


def _near_linear_block(coeff: float, **kwargs) -> ResidualBlock:
    """Identity-initialised convolutions and saturated LipSwish: ``J_g ~ coeff / 1.1^3 I`` on positive inputs, so the
    higher power-series terms (and the roulette weights ``1 / P(n >= k)``) matter."""
    torch.manual_seed(0)
    block = ResidualBlock(2, 6, 3, coeff, **kwargs).double()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, OrthoConv2d):
                m.reset_parameters("identical")
                m.bias.fill_(3.0)
        for name, p in block.named_parameters():
            if name.endswith(".b"):
                p.fill_(3.0)
    return reorthogonalize_(block)


@pytest.mark.parametrize("kind,n_exact", [("random", 1), ("random", 3), ("near_linear", 1), ("near_linear", 2)])
def test_roulette_estimator_is_unbiased(kind, n_exact):
    if kind == "random":
        block = _random_block(0.9, seed=0, n_exact=n_exact)
        x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    else:
        block = _near_linear_block(0.6, n_exact=n_exact)
        x = 3.0 + 0.3 * torch.randn(1, 2, 4, 4, dtype=torch.float64)
    exact = block.exact_logdet(x).item()
    est = _call_means(block, x, torch.Generator().manual_seed(n_exact))
    se = est.std().item() / math.sqrt(len(est))
    assert abs(est.mean().item() - exact) < 4 * se
    if kind == "near_linear":
        # the test's power, on blocks built so that the higher series terms matter: the first-order (biased)
        # truncation would be detected. On random blocks how far that truncation lands depends on the draw
        # (0.1 to 5 standard errors over seeds 0-5), so it is no control there.
        jac_g = torch.autograd.functional.jacobian(lambda v: block.g(v.view_as(x)).flatten(), x.flatten())
        assert abs(torch.trace(jac_g).item() - exact) > 4 * se


def test_estimator_is_differentiable_in_parameters():
    block = _random_block(0.9)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    _, logdet = block(x, torch.Generator().manual_seed(0))
    logdet.sum().backward()
    grads = [p.grad for p in block.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_squeeze_round_trip():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    s = squeeze(x)
    assert s.shape == (2, 12, 2, 3) and torch.equal(unsqueeze(s), x)
    assert torch.equal(s[0, :4, 0, 0], torch.tensor([0.0, 1.0, 6.0, 7.0]))  # one 2x2 window -> 4 channels


def _tiny_flow() -> ResidualFlow:
    torch.manual_seed(0)
    return ResidualFlow(in_shape=(1, 8, 8), blocks=(1, 1), hidden=4, coeff=0.9, atol=1e-7, max_iter=400)


def test_flow_inverse_recovers_the_input():
    flow = _tiny_flow()
    x = torch.rand(3, 1, 8, 8) * 0.9 + 0.05
    with torch.no_grad():
        z, _ = flow(x)
    assert z.shape == (3, 64)
    assert torch.allclose(flow.inverse(z), x, atol=1e-4, rtol=0)


def test_flow_exact_log_prob_matches_change_of_variables():
    """The flow's log-det (with exact per-block terms swapped in) equals slogdet of the dense Jacobian dz/dx."""
    flow = _tiny_flow().double()
    reorthogonalize_(flow)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64) * 0.9 + 0.05
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.view(1, 1, 8, 8))[0].flatten(), x.flatten())
    exact = torch.linalg.slogdet(jac)[1].item()
    est = _call_means(flow, x, torch.Generator().manual_seed(0), calls=200)
    se = est.std().item() / math.sqrt(len(est))
    assert abs(est.mean().item() - exact) < 4 * se


def test_log_prob_and_bits_per_dim_through_the_registry():
    entry = zoo.model_info("sc-fac-resflow-mnist")
    assert entry.task == "generative" and entry.dataset == "mnist" and list(entry.input.shape) == [1, 28, 28]
    assert entry.reference.metrics["bits_per_dim"] == 0.896
    torch.manual_seed(0)
    flow = zoo.create("sc-fac-resflow-mnist", blocks=[1, 1], hidden=4)
    pixels = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    bpd = flow.bits_per_dim(pixels, g)
    assert bpd.shape == (2,) and torch.isfinite(bpd).all()
    bpd.mean().backward()
    grads = [p.grad for p in flow.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads) and any(gr.abs().sum() > 0 for gr in grads)
    x = torch.rand(2, 1, 28, 28)
    lp = flow.log_prob(x, torch.Generator().manual_seed(1))
    z, logdet = flow(x, torch.Generator().manual_seed(1))
    assert torch.allclose(lp, -0.5 * (z ** 2).sum(1) - 392 * math.log(2 * math.pi) + logdet)
    samples = flow.sample(3, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (3, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1


def test_trained_small_flow_models_held_out_digits():
    """The reduced flow trained by scripts/demo_resflow_mnist.py beats an untrained one and inverts real digits."""
    import json
    from pathlib import Path

    from zoo.datasets import mnist, split

    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    record = json.loads((bench / "resflow_mnist.json").read_text())
    images, _ = mnist()
    _, held_out = split(len(images), 2000, seed=0)
    pixels = images[held_out[:16]]
    trained = zoo.create("sc-fac-resflow-mnist-small", pretrained=True).eval()  # the bundled, sha256-checked weights
    torch.manual_seed(0)
    fresh = zoo.create("sc-fac-resflow-mnist-small")
    with torch.no_grad():
        fresh(pixels.float() / 256 + 1 / 512)  # data-dependent ActNorm initialisation
        fresh.eval()
        bpd = trained.bits_per_dim(pixels, torch.Generator().manual_seed(0))
        bpd_fresh = fresh.bits_per_dim(pixels, torch.Generator().manual_seed(0))
    assert bpd.mean() < bpd_fresh.mean() - 0.3
    assert abs(bpd.mean().item() - record["held_out"]["bits_per_dim"]) < 0.3  # 16 of the 2,000 held-out images
    x = (pixels[:4].float() + 0.5) / 256
    with torch.no_grad():
        z, _ = trained(x)
    assert torch.allclose(trained.inverse(z), x, atol=1e-4, rtol=0)
