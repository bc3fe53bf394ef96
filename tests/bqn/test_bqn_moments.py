"""CLT layers: the propagated mean and variance equal the exact ones, by enumerating weights and inputs."""

import pytest
import torch

from .bqn_reference import mean_var_of
from zoo_bqn.dist import Categorical
from zoo_bqn.layers import BayesConv2d, BayesLinear, as_categorical
from zoo_bqn.levels import make_levels
from zoo_bqn.models import bqn_cnn


@pytest.fixture(autouse=True)
def no_grad():
    """Moment checks need no gradients (and ``float()`` of a tensor in a graph warns)."""
    with torch.no_grad():
        yield


def _randomise(layer, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.logits.copy_(2 * torch.randn(layer.logits.shape, generator=g))
    return layer.double()


@pytest.mark.parametrize("w_levels", ["binary", "ternary", "quaternary"])
@pytest.mark.parametrize("h_levels", ["binary", [-1.0, 0.0, 2.0]])
def test_linear_moments_exact(w_levels, h_levels):
    layer = _randomise(BayesLinear(3, 2, levels=w_levels), seed=1)
    hl = make_levels(h_levels)
    g = torch.Generator().manual_seed(2)
    h_probs = torch.softmax(torch.randn(1, 3, hl.numel(), generator=g, dtype=torch.float64), -1)
    out = layer(Categorical(h_probs, hl))
    w_probs = layer.probs().detach()
    wl = layer.levels.tolist()
    for j in range(2):
        pmfs = [w_probs[j, i].tolist() for i in range(3)] + [h_probs[0, i].tolist() for i in range(3)]
        supports = [wl] * 3 + [hl.tolist()] * 3
        m, v = mean_var_of(lambda *a: sum(a[i] * a[3 + i] for i in range(3)), pmfs, supports)
        assert float(out.mean[0, j]) == pytest.approx(m, abs=1e-12)
        assert float(out.var[0, j]) == pytest.approx(v, abs=1e-12)


def test_linear_moments_deterministic_input():
    layer = _randomise(BayesLinear(4, 3, levels="ternary"), seed=3)
    x = torch.tensor([[0.5, -1.5, 2.0, 0.0]], dtype=torch.float64)
    out = layer(x)
    w_probs, wl = layer.probs().detach(), layer.levels.tolist()
    for j in range(3):
        m, v = mean_var_of(lambda *w: sum(w[i] * float(x[0, i]) for i in range(4)),
                           [w_probs[j, i].tolist() for i in range(4)], [wl] * 4)
        assert float(out.mean[0, j]) == pytest.approx(m, abs=1e-12)
        assert float(out.var[0, j]) == pytest.approx(v, abs=1e-12)


@pytest.mark.parametrize("stride, padding, size", [(1, 1, 2), (2, 0, 4)])
def test_conv_moments_exact(stride, padding, size):
    layer = _randomise(BayesConv2d(1, 2, 2, stride=stride, padding=padding, levels="ternary"), seed=4)
    hl = make_levels("binary")
    g = torch.Generator().manual_seed(5)
    h_probs = torch.softmax(torch.randn(1, 1, size, size, 2, generator=g, dtype=torch.float64), -1)
    out = layer(Categorical(h_probs, hl))
    w_probs, wl = layer.probs().detach(), layer.levels.tolist()
    oh = (size + 2 * padding - 2) // stride + 1
    assert out.mean.shape == (1, 2, oh, oh)
    for o in range(2):
        for a in range(oh):
            for b in range(oh):
                pmfs, supports, n = [], [], 0
                for di in range(2):
                    for dj in range(2):
                        r, c = a * stride - padding + di, b * stride - padding + dj
                        if 0 <= r < size and 0 <= c < size:
                            pmfs += [w_probs[o, 0, di, dj].tolist(), h_probs[0, 0, r, c].tolist()]
                            supports += [wl, hl.tolist()]
                            n += 1
                m, v = mean_var_of(lambda *t: sum(t[2 * k] * t[2 * k + 1] for k in range(n)), pmfs, supports)
                assert float(out.mean[0, o, a, b]) == pytest.approx(m, abs=1e-12)
                assert float(out.var[0, o, a, b]) == pytest.approx(v, abs=1e-12)


def test_cnn_reads_pooled_moments_equal_to_those_of_the_dft_pmf():
    torch.manual_seed(0)
    model = bqn_cnn(num_classes=3, img_size=8, channels=(3, 4), kernel_size=3, act_levels="ternary").double()
    for layer in model.modules():
        if isinstance(layer, (BayesConv2d, BayesLinear)):
            _randomise(layer, seed=6)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        fast = model.propagate(x)
        h = model.stem(x)
        for layer in [*model.features, *model.pre_logits]:  # the DFT pmf of every pooled unit, as before the
            # closed-form moments
            h = as_categorical(layer(h))
        slow = model.head(h)
    assert torch.allclose(fast.mean, slow.mean, atol=1e-12, rtol=0)
    assert torch.allclose(fast.var, slow.var, atol=1e-12, rtol=0)
