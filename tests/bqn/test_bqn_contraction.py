"""DFT pooling, direct contraction (activations, shortcuts) and Gaussian quantization against exact answers;
gradcheck of every propagation rule in float64."""

import math

import pytest
import torch
from torch import nn

from .bqn_reference import pmf_of, sign
from zoo_bqn.contraction import clt_moments, dft_sum, direct_contraction, gaussian_quantize, mean_pmf
from zoo_bqn.dist import Categorical, CategoricalMean, Gaussian, mean_var, moments, reshape
from zoo_bqn.layers import AvgPoolDFT, QuantAct, Residual
from zoo_bqn.levels import make_levels
from zoo_bqn.quantized import linear


def _random_probs(shape, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(1.5 * torch.randn(*shape, d, generator=g, dtype=torch.float64), -1)


def _as_dict(probs_row, support):
    return {round(float(v), 9): float(p) for v, p in zip(support, probs_row) if float(p) > 1e-15}


def _assert_pmf_equal(got: dict, want: dict):
    keys = set(got) | set(want)
    for k in keys:
        assert got.get(k, 0.0) == pytest.approx(want.get(k, 0.0), abs=1e-12), k


@pytest.mark.parametrize("levels, k", [("binary", 4), ("ternary", 4), ("quaternary", 3), ("binary", 9)])
def test_dft_sum_matches_enumeration(levels, k):
    lv = make_levels(levels)
    probs = _random_probs((2, k), lv.numel(), seed=k)
    pmf, support = dft_sum(probs, lv)
    assert pmf.shape == (2, k * (lv.numel() - 1) + 1)
    for b in range(2):
        want = pmf_of(lambda *v: sum(v), [probs[b, i].tolist() for i in range(k)], [lv.tolist()] * k)
        _assert_pmf_equal(_as_dict(pmf[b], support), want)


@pytest.mark.parametrize("levels", ["binary", "ternary"])
def test_avg_pool_dft_matches_enumeration(levels):
    lv = make_levels(levels)
    probs = _random_probs((1, 2, 4, 5), lv.numel(), seed=7)  # W=5: floor mode drops the last column
    pooled = AvgPoolDFT(2)(Categorical(probs, lv))
    assert isinstance(pooled, CategoricalMean) and pooled.shape == (1, 2, 2, 2)
    out = mean_pmf(pooled)
    assert out.probs.shape[:-1] == (1, 2, 2, 2)
    # the closed-form moments a CLT layer reads equal those of the DFT pmf
    for got, want in zip(moments(pooled), moments(out)):
        assert torch.allclose(got, want, atol=1e-14, rtol=0)
    for c in range(2):
        for a in range(2):
            for b in range(2):
                cells = [probs[0, c, 2 * a + i, 2 * b + j].tolist() for i in range(2) for j in range(2)]
                want = pmf_of(lambda *v: sum(v) / 4, cells, [lv.tolist()] * 4)
                _assert_pmf_equal(_as_dict(out.probs[0, c, a, b], out.levels), want)


def test_pooled_units_reshape_and_feed_activations_and_shortcuts_exactly():
    lv = make_levels("binary")
    probs = _random_probs((1, 1, 2, 4), 2, seed=11)
    pooled = AvgPoolDFT(2)(Categorical(probs, lv))  # 2 units, each the mean of 4 binary units
    flat = reshape(pooled, (1, 2))
    assert isinstance(flat, CategoricalMean) and flat.shape == (1, 2)
    assert all(torch.equal(a.reshape(1, 2), b) for a, b in zip(mean_var(pooled), mean_var(flat)))
    cells = [[probs[0, 0, i, 2 * u + j].tolist() for i in range(2) for j in range(2)] for u in range(2)]
    act = QuantAct("ternary", 0.5)  # thresholds +-0.25 on the pooled value
    out = act(flat)
    res = Residual(nn.Identity())(flat)  # u + u, the two branches independent under mean-field
    for u in range(2):
        want = pmf_of(lambda *v: float(act.qnn(torch.tensor([sum(v) / 4], dtype=torch.float64), {})[0]),
                      cells[u], [lv.tolist()] * 4)
        _assert_pmf_equal(_as_dict(out.probs[0, u], out.levels), want)
        want = pmf_of(lambda *v: sum(v[:4]) / 4 + sum(v[4:]) / 4, cells[u] * 2, [lv.tolist()] * 8)
        _assert_pmf_equal(_as_dict(res.probs[0, u], res.levels), want)


def test_avg_pool_gaussian_and_tensor():
    g = Gaussian(torch.randn(1, 1, 2, 2, dtype=torch.float64), torch.rand(1, 1, 2, 2, dtype=torch.float64))
    out = AvgPoolDFT(2)(g)
    assert float(out.mean) == pytest.approx(float(g.mean.mean()))
    assert float(out.var) == pytest.approx(float(g.var.sum()) / 16)
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert float(AvgPoolDFT(2)(x)) == 1.5


def test_shortcut_direct_contraction_matches_enumeration():
    lv_a, lv_b = make_levels("binary"), make_levels("ternary")
    pa, pb = _random_probs((3,), 2, seed=1), _random_probs((3,), 3, seed=2)
    out = direct_contraction([Categorical(pa, lv_a), Categorical(pb, lv_b)], lambda a, b: a + b)
    for u in range(3):
        want = pmf_of(lambda a, b: a + b, [pa[u].tolist(), pb[u].tolist()], [lv_a.tolist(), lv_b.tolist()])
        _assert_pmf_equal(_as_dict(out.probs[u], out.levels), want)


def test_residual_layer_adds_categoricals_exactly():
    lv = make_levels("binary")
    p = _random_probs((1, 4), 2, seed=3)
    res = Residual(QuantAct("binary"))  # body(x) = sign(x) = x for binary x: y = 2x
    out = res(Categorical(p, lv))
    # mean-field treats x and body(x) as independent: pmf = convolution of p with itself
    for u in range(4):
        want = pmf_of(lambda a, b: a + b, [p[0, u].tolist()] * 2, [lv.tolist()] * 2)
        _assert_pmf_equal(_as_dict(out.probs[0, u], out.levels), want)


@pytest.mark.parametrize("levels, scale", [("binary", 1.0), ("ternary", 2.0), ("quaternary", 0.5)])
def test_gaussian_quantize_closed_form(levels, scale):
    lv = make_levels(levels)
    mean = torch.tensor([-1.3, 0.0, 0.4, 2.2], dtype=torch.float64)
    var = torch.tensor([0.7, 2.0, 0.05, 1.0], dtype=torch.float64)
    probs = QuantAct(levels, scale)(Gaussian(mean, var)).probs
    cuts = [scale * 0.5 * (a + b) for a, b in zip(lv.tolist()[:-1], lv.tolist()[1:])]
    for u in range(4):
        m, sd = float(mean[u]), math.sqrt(float(var[u]))
        cdf = [0.0] + [0.5 * (1 + math.erf((t - m) / (sd * math.sqrt(2)))) for t in cuts] + [1.0]
        want = [cdf[i + 1] - cdf[i] for i in range(lv.numel())]
        assert probs[u].tolist() == pytest.approx(want, abs=1e-12)


def test_quantize_deterministic_input_is_exact_step():
    act = QuantAct("binary")
    z = torch.tensor([-2.0, -1e-12, 0.0, 3.0], dtype=torch.float64)
    out = act(Gaussian(z, torch.zeros_like(z)))
    assert out.probs.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    assert act.qnn(z, {}).tolist() == [sign(v) for v in z.tolist()]


@pytest.mark.parametrize("levels, scale", [("binary", 1.0), ("ternary", 0.7)])
def test_quantize_categorical_input_matches_enumeration(levels, scale):
    in_lv = make_levels([-1.0, -0.5, 0.0, 0.5, 1.0])
    p = _random_probs((3,), 5, seed=9)
    act = QuantAct(levels, scale)
    out = act(Categorical(p, in_lv))
    for u in range(3):
        want = pmf_of(lambda v: float(act.qnn(torch.tensor([v], dtype=torch.float64), {})[0]),
                      [p[u].tolist()], [in_lv.tolist()])
        _assert_pmf_equal(_as_dict(out.probs[u], out.levels), want)


def test_gradcheck_propagation_rules():
    lv = make_levels("ternary")
    logits = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dft_sum(torch.softmax(t, -1), lv)[0], (logits,))
    la = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    lb = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: direct_contraction([Categorical(torch.softmax(a, -1), make_levels("binary")),
                                         Categorical(torch.softmax(b, -1), lv)], lambda x, y: x + y).probs,
        (la, lb))
    mean = torch.randn(5, dtype=torch.float64, requires_grad=True)
    var = (torch.rand(5, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda m, v: gaussian_quantize(Gaussian(m, v), lv, 1.5), (mean, var))
    h = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    s = (torch.rand(2, 3, dtype=torch.float64) + h.detach() ** 2).requires_grad_()
    wm = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    ws = (torch.rand(4, 3, dtype=torch.float64) + wm.detach() ** 2 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: torch.cat([g.reshape(-1) for g in (
        lambda r: (r.mean, r.var))(clt_moments(*a, linear))]), (h, s, wm, ws))
