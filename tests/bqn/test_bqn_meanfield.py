"""Where analytic inference departs from the exact predictive: the chapter's mean-field approximation, not the code.

Three independent references on networks small enough to enumerate every weight configuration:

* (ii) the chapter's propagation re-derived from the text in plain Python floats: units of a layer independent
  (rank-1 CP, Eq. 5.10), a linear layer's output Gaussian with the exact mean and variance of the sum (Lyapunov CLT),
  sign(z) with P(h = +1) = P(z >= 0), average pooling of independent units;
* (ii-b) the mean-field propagation without the CLT: Eq. (5.10) enumerated literally for every unit (exact pmfs of
  independent fan-ins);
* (iii) the exact law: the layers' weights are independent, so the hidden layers form a Markov chain and their JOINT
  pmf is propagated by enumerating each layer's weight configurations.

The zoo equals (ii) to 1e-12 at every layer (no implementation error); (ii-b) equals (iii) wherever the units of a
layer are truly independent, and the remaining gap is exactly the covariance between units that the mean-field drops
(after two hidden layers of an MLP; after a convolution whose positions share the kernel). The zoo's Monte-Carlo
sampling (one weight draw per sample) converges to (iii), not to the mean-field moments.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import pytest
import torch

from .bqn_reference import all_configs, mean_var_of, pmf_of
from zoo_bqn.dist import Categorical, mean_var
from zoo_bqn.layers import AvgPoolDFT, BayesConv2d, BayesLinear, QuantAct, qnn_apply, realise
from zoo_bqn.models import bqn_mlp

LEVELS = [-1.0, 1.0]


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def _set_logits(layer, sharpness: float, g: torch.Generator) -> None:
    shape = layer.logits.shape
    layer.logits.copy_(sharpness * torch.sign(torch.randn(shape, generator=g, dtype=torch.float64))
                       + 0.7 * torch.randn(shape, generator=g, dtype=torch.float64))


def _mlp(seed: int = 1, sharpness: float = 2.0):
    """BQN 4 -> 4 -> 4 -> 2, binary weights and sign units, and two real-valued inputs (B = 2)."""
    g = torch.Generator().manual_seed(seed)
    m = bqn_mlp(num_classes=2, in_chans=1, img_size=2, hidden=(4, 4)).double()
    for layer in (m.features[1], m.features[3], m.head):
        _set_logits(layer, sharpness, g)
    x = torch.randn(2, 1, 2, 2, generator=g, dtype=torch.float64)
    return m, x


def _weight_lists(layer) -> Tuple[List[List[float]], List[List[float]]]:
    """E[w] and E[w^2] of a binary layer (out, in) as nested Python floats."""
    p_plus = layer.probs()[..., 1].tolist()
    mean = [[2 * p - 1 for p in row] for row in p_plus]
    return mean, [[1.0] * len(row) for row in p_plus]


# ------------------------------------------------------------------ (ii): the chapter's equations, Python floats
def _text_linear(m: List[float], s: List[float], w_mean, w_second) -> Tuple[List[float], List[float]]:
    """Mean and variance of z_j = sum_i w_ji h_i for independent w, h (the CLT layer's moments)."""
    mean = [sum(wm * hm for wm, hm in zip(row, m)) for row in w_mean]
    var = [sum(w2 * hs - (wm * hm) ** 2 for wm, w2, hm, hs in zip(row, row2, m, s))
           for row, row2 in zip(w_mean, w_second)]
    return mean, var


def _text_sign(mean: List[float], var: List[float]) -> Tuple[List[float], List[float]]:
    """(E[h], E[h^2]) of h = sign(z), z ~ N(mean, var), sign(0) = +1."""
    p = [0.5 * (1 + math.erf(mu / math.sqrt(2 * v))) for mu, v in zip(mean, var)]
    return [2 * q - 1 for q in p], [1.0] * len(p)


def _text_mlp(model, x: List[float]) -> List[Tuple[List[float], List[float]]]:
    """Means and variances of z1, h1, z2, h2, logits under (ii)."""
    out = []
    m, s = list(x), [v * v for v in x]
    for layer, act in ((model.features[1], True), (model.features[3], True), (model.head, False)):
        z_mean, z_var = _text_linear(m, s, *_weight_lists(layer))
        out.append((z_mean, z_var))
        if act:
            m, s = _text_sign(z_mean, z_var)
            out.append((m, [b - a * a for a, b in zip(m, s)]))
    return out


# ------------------------------------------------------------------ (ii-b): Eq. (5.10) enumerated per unit
def _enum_layer(x_pmfs, x_supports, layer) -> Tuple[List[float], List[Tuple[float, float]]]:
    """P(h_j = +1) of h = sign(z), z = W h_in, for independent inputs (pmfs over supports) and binary weights, by
    enumerating each unit's fan-in (Eq. 5.10); and (mean, var) of every z_j."""
    probs = layer.probs()[..., 1].tolist()
    out_p, moments = [], []
    for row in probs:
        n = len(row)
        pmfs = [[1 - p, p] for p in row] + list(x_pmfs)
        supports = [LEVELS] * n + list(x_supports)

        def z(*v: float) -> float:
            return sum(v[i] * v[n + i] for i in range(n))

        moments.append(mean_var_of(z, pmfs, supports))
        out_p.append(sum(p for value, p in pmf_of(z, pmfs, supports).items() if value >= 0))
    return out_p, moments


def _enum_mlp(model, x: List[float]):
    """Means and variances of z1, h1, z2, h2, logits under exact mean-field propagation (ii-b)."""
    out = []
    pmfs, supports = [[1.0]] * len(x), [[v] for v in x]
    for layer in (model.features[1], model.features[3]):
        p, z = _enum_layer(pmfs, supports, layer)
        out += [([a for a, _ in z], [b for _, b in z]), ([2 * q - 1 for q in p], [4 * q * (1 - q) for q in p])]
        pmfs, supports = [[1 - q, q] for q in p], [LEVELS] * len(p)
    _, z = _enum_layer(pmfs, supports, model.head)
    out.append(([a for a, _ in z], [b for _, b in z]))
    return out


# ------------------------------------------------------------------ (iii): the exact law, joint over each layer
def _configs(layer) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every weight matrix of a binary layer (C, out, in) and its probability under Q (C,)."""
    probs = layer.probs().reshape(-1, 2)
    idx, vals = all_configs(probs.shape[0], LEVELS)
    q = probs[torch.arange(probs.shape[0]), idx].prod(1)
    return vals.reshape(-1, *layer.weight_shape), q


def _sign(z: torch.Tensor) -> torch.Tensor:
    return torch.where(z >= 0, 1.0, -1.0).to(torch.float64)


def _moments(values: torch.Tensor, weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance over dim 0 of ``values`` (N, ...) with probabilities ``weight`` (N,)."""
    w = weight.reshape(-1, *[1] * (values.dim() - 1))
    mean = (w * values).sum(0)
    return mean, (w * (values - mean) ** 2).sum(0)


def _exact_mlp(model, x: torch.Tensor):
    """Exact (mean, var) of z1, h1, z2, h2, logits, and the exact covariance of h2 (4, 4), for one input (4,)."""
    states = all_configs(4, LEVELS)[1]  # (16, 4): every value of a 4-unit sign layer
    w1, q1 = _configs(model.features[1])
    z1 = w1 @ x  # (C1, 4)
    h1 = _sign(z1)
    p_h1 = torch.stack([(q1 * (h1 == s).all(1)).sum() for s in states])  # joint pmf of h1 (16,)
    w2, q2 = _configs(model.features[3])
    z2 = torch.einsum("coi,si->sco", w2, states)  # (16 states, C2, 4)
    weight2 = p_h1.view(-1, 1) * q2.view(1, -1)  # P(h1 = s) Q(W2)
    h2 = _sign(z2)
    p_h2 = torch.stack([(weight2 * (h2 == s).all(-1)).sum() for s in states])
    w3, q3 = _configs(model.head)
    z3 = torch.einsum("coi,si->sco", w3, states)
    weight3 = p_h2.view(-1, 1) * q3.view(1, -1)
    out = [_moments(z1, q1), _moments(h1, q1),
           _moments(z2.reshape(-1, 4), weight2.reshape(-1)), _moments(h2.reshape(-1, 4), weight2.reshape(-1)),
           _moments(z3.reshape(-1, 2), weight3.reshape(-1))]
    h2_mean = p_h2 @ states
    cov = (p_h2.view(-1, 1, 1) * torch.einsum("si,sj->sij", states - h2_mean, states - h2_mean)).sum(0)
    return out, cov


def _zoo_mlp(model, x: torch.Tensor):
    """The zoo's per-layer (mean, var): z1, h1, z2, h2, logits."""
    h = model.features[0](model.stem(x))  # Flatten
    out = []
    for layer in list(model.features)[1:] + [model.head]:
        h = layer(h)
        out.append(mean_var(h))
    return out


NAMES = ["z1", "h1", "z2", "h2", "logits"]


@pytest.fixture(scope="module")
def tiny():
    with torch.no_grad():
        model, x = _mlp()
        xf = x.reshape(2, -1)
        exact = [_exact_mlp(model, xf[b]) for b in range(2)]
        return model, x, xf, exact


def test_zoo_equals_the_chapters_equations_at_every_layer(tiny):
    model, x, xf, _ = tiny
    zoo = _zoo_mlp(model, x)
    for b in range(2):
        text = _text_mlp(model, xf[b].tolist())
        for name, (zm, zv), (tm, tv) in zip(NAMES, zoo, text):
            assert zm[b].tolist() == pytest.approx(tm, abs=1e-12), name
            assert zv[b].tolist() == pytest.approx(tv, abs=1e-12), name


def test_exact_mean_field_is_exact_until_units_become_correlated(tiny):
    """(ii-b) == (iii) for z1, h1, z2, h2 (the hidden units of the first layer are independent given x, so the
    second layer's marginals are exact too) and the logits' mean; the logits' variance misses exactly
    sum_{k != k'} E[w_jk] E[w_jk'] Cov(h2_k, h2_k')."""
    model, _, xf, exact = tiny
    w_mean = torch.tensor(_weight_lists(model.head)[0], dtype=torch.float64)  # (2, 4)
    gaps = []
    for b in range(2):
        mf = _enum_mlp(model, xf[b].tolist())
        layers, cov = exact[b]
        for name, (em, ev), (fm, fv) in zip(NAMES[:4], layers[:4], mf[:4]):
            assert em.tolist() == pytest.approx(fm, abs=1e-12), name
            assert ev.tolist() == pytest.approx(fv, abs=1e-12), name
        (em, ev), (fm, fv) = layers[4], mf[4]
        assert em.tolist() == pytest.approx(fm, abs=1e-12)
        off = cov - torch.diag(torch.diag(cov))
        dropped = torch.einsum("ji,ik,jk->j", w_mean, off, w_mean)
        assert (ev - torch.tensor(fv, dtype=torch.float64)).tolist() == pytest.approx(dropped.tolist(), abs=1e-12)
        gaps.append((dropped.abs() / ev).max())
    assert max(gaps) > 0.1  # the dropped covariance is a material part of the exact variance here


def test_zoo_logit_variance_misses_only_the_covariance_given_exact_marginals(tiny):
    """The zoo's head fed the EXACT marginals of h2 returns the exact logit mean and the exact variance minus the
    covariance term: the head's CLT moments are exact, the loss is the independence assumption."""
    model, _, _, exact = tiny
    w_mean = torch.tensor(_weight_lists(model.head)[0], dtype=torch.float64)
    for b in range(2):
        layers, cov = exact[b]
        h2_mean = layers[3][0]
        p_plus = (1 + h2_mean) / 2
        out = model.head(Categorical(torch.stack([1 - p_plus, p_plus], -1).unsqueeze(0), torch.tensor(LEVELS)))
        em, ev = layers[4]
        off = cov - torch.diag(torch.diag(cov))
        assert out.mean[0].tolist() == pytest.approx(em.tolist(), abs=1e-12)
        want = ev - torch.einsum("ji,ik,jk->j", w_mean, off, w_mean)
        assert out.var[0].tolist() == pytest.approx(want.tolist(), abs=1e-12)


def test_zoo_monte_carlo_converges_to_the_exact_law_not_to_the_mean_field(tiny):
    """The zoo's MC path (one weight draw per sample, shared by the batch: each example's marginal is Q's) reaches
    the exact logit moments within Monte-Carlo error, and is far from the mean-field variance."""
    model, x, xf, exact = tiny
    g = torch.Generator().manual_seed(0)
    samples = torch.stack([model.qnn_logits(x, realise(model, "sample", g)) for _ in range(10000)])  # (S, 2, 2)
    for b in range(2):
        em, ev = exact[b][0][4]
        mc_mean, mc_var = samples[:, b].mean(0), samples[:, b].var(0)
        se = (ev / samples.shape[0]).sqrt()
        assert ((mc_mean - em).abs() < 4.5 * se).all()
        # the variance of a sample variance of S draws: (m4 - var^2) / S; |m4| <= max|z|^4 = 16 here
        assert ((mc_var - ev).abs() < 4.5 * (16.0 / samples.shape[0]) ** 0.5).all()
        mf_var = torch.tensor(_enum_mlp(model, xf[b].tolist())[4][1], dtype=torch.float64)
        far = (mf_var - ev).abs() > 10 * (16.0 / samples.shape[0]) ** 0.5
        assert far.any()
        assert ((mc_var - mf_var).abs()[far] > 5 * (16.0 / samples.shape[0]) ** 0.5).all()


def test_conv_weight_sharing_correlates_the_pooled_units():
    """A 3x3 convolution (one channel, 9 binary weights: 512 configurations) -> sign -> 2x2 average pooling on a 4x4
    input. The positions of a feature map share the kernel, so they are correlated even for a deterministic input;
    the pooled variance the zoo returns (independent units) misses exactly (1/16) sum_{p != p'} Cov(h_p, h_p')."""
    g = torch.Generator().manual_seed(1)
    conv = BayesConv2d(1, 1, 3, padding=1).double()
    _set_logits(conv, 1.2, g)
    act, pool = QuantAct(), AvgPoolDFT(2)
    x = torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64)
    w, q = _configs(conv)  # (512, 1, 1, 3, 3)
    h = _sign(torch.nn.functional.conv2d(x, w.reshape(-1, 1, 3, 3), padding=1))[0]  # (512, 4, 4)
    u = torch.nn.functional.avg_pool2d(h.unsqueeze(1), 2).squeeze(1)  # (512, 2, 2)
    u_mean, u_var = _moments(u, q)
    h_mean, h_var = _moments(h, q)
    # the zoo's pooling of the exact sign marginals: exact mean, variance without the covariances
    p_plus = (1 + h_mean) / 2
    pooled = pool(Categorical(torch.stack([1 - p_plus, p_plus], -1).view(1, 1, 4, 4, 2), torch.tensor(LEVELS)))
    got_mean, got_var = mean_var(pooled)
    assert torch.allclose(got_mean[0, 0], u_mean, atol=1e-12, rtol=0)
    windows = h.reshape(-1, 2, 2, 2, 2).transpose(2, 3).reshape(-1, 2, 2, 4)  # (512, i, j, 4 positions)
    centred = windows - windows.mul(q.view(-1, 1, 1, 1)).sum(0)
    cov = torch.einsum("c,cijp,cijr->ijpr", q, centred, centred)
    off = cov.sum((-1, -2)) - torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
    assert torch.allclose(got_var[0, 0], u_var - off / 16, atol=1e-12, rtol=0)
    assert (off / 16 / u_var).abs().max() > 0.3  # weight sharing: a large part of the pooled variance
    # and the zoo's full propagation (CLT sign marginals) equals the text's independent-unit equations
    zoo_mean, zoo_var = mean_var(pool(act(conv(x))))
    z = conv(x)
    sd = z.var.sqrt()
    text_p = 0.5 * (1 + torch.erf(z.mean / (sd * math.sqrt(2))))
    text_h_var = 4 * text_p * (1 - text_p)
    assert torch.allclose(zoo_mean, torch.nn.functional.avg_pool2d(2 * text_p - 1, 2), atol=1e-12, rtol=0)
    assert torch.allclose(zoo_var, torch.nn.functional.avg_pool2d(text_h_var, 2) / 4, atol=1e-12, rtol=0)
    # MC of the zoo's QNN path reaches the exact pooled variance, not the mean-field one
    gen = torch.Generator().manual_seed(2)
    mc = torch.stack([qnn_apply(torch.nn.Sequential(conv, act, pool), x, realise(conv, "sample", gen))[0, 0]
                      for _ in range(10000)])
    tol = 4.5 * (1.0 / mc.shape[0]) ** 0.5  # |u| <= 1: sd of a sample variance <= sqrt(1 / S)
    assert ((mc.var(0) - u_var).abs() < tol).all()


def _exact_sum_pmf(p_plus: torch.Tensor) -> torch.Tensor:
    """Pmf of sum_i s_i over the values -n, -n + 2, ..., n for independent s_i = +-1 with P(s_i = +1) = p_plus (n,),
    by repeated convolution of the two-point pmfs (index k: the value 2k - n)."""
    pmf = torch.ones(1, dtype=torch.float64)
    for p in p_plus.tolist():
        pmf = torch.cat([pmf * (1 - p), torch.zeros(1, dtype=torch.float64)]) \
            + torch.cat([torch.zeros(1, dtype=torch.float64), pmf * p])
    return pmf


def test_gaussian_sign_misses_the_tie_of_a_lattice_sum():
    """A known limit of the CLT step, beside the mean-field one: with binary weights and binary inputs,
    z = sum_i w_i h_i takes only even integers (256 terms), and the QNN's sign sends the atom z = 0 to +1, which a
    Gaussian reads as probability 0. Against the exact pmf of z (independent inputs, so exact under the mean-field),
    the zoo's P(h = +1) = Phi(mu / sigma) is low by about half the atom; the continuity-corrected
    Phi((mu + 1) / sigma) is not."""
    g = torch.Generator().manual_seed(3)
    layer = BayesLinear(256, 16).double()
    _set_logits(layer, 2.0, g)
    h_plus = torch.sigmoid(3 * torch.randn(1, 256, generator=g, dtype=torch.float64))
    z = layer(Categorical(torch.stack([1 - h_plus, h_plus], -1), torch.tensor(LEVELS)))
    zoo_plus = QuantAct()(z).probs[0, :, 1]
    w_plus = layer.probs()[..., 1]
    prod_plus = w_plus * h_plus + (1 - w_plus) * (1 - h_plus)  # P(w_i h_i = +1), (16, 256)
    exact, atom = [], []
    for j in range(16):
        pmf = _exact_sum_pmf(prod_plus[j])
        exact.append(float(pmf[128:].sum()))  # values 2k - 256 >= 0
        atom.append(float(pmf[128]))
    exact_t, atom_t = torch.tensor(exact, dtype=torch.float64), torch.tensor(atom, dtype=torch.float64)
    sd = z.var[0].sqrt()
    assert torch.allclose(zoo_plus, torch.special.ndtr(z.mean[0] / sd), atol=1e-14, rtol=0)
    gap = exact_t - zoo_plus
    assert gap.abs().max() > 0.02 and (gap > -1e-3).all()  # one-sided: the tie goes to +1
    assert torch.allclose(gap, atom_t / 2, atol=2e-3, rtol=0)
    corrected = torch.special.ndtr((z.mean[0] + 1) / sd)
    assert (exact_t - corrected).abs().max() < 0.05 * gap.abs().max()
