"""Building SC-Fac models is cheap by construction (issue 17), not by timing: no factorisation of a large random matrix,
one batched Householder product per layer, and the initialisation is still exactly orthogonal, Haar where the chapter
says Haar (7.7.2), and centred (Proposition 7.2). Every check is deterministic (fixed seeds), none is timed."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
import torch

import zoo
from zoo_scfac.initialization import haar_frame, haar_orthogonal, torus_matrices
from zoo_scfac.layers import OrthoConv2d, OrthoLinear, _OrthoConvNd

DECOMPOSITIONS = [(torch.linalg, "svd"), (torch.linalg, "svdvals"), (torch.linalg, "qr"), (torch.linalg, "eig"),
                  (torch.linalg, "eigh"), (torch.linalg, "det"), (torch.linalg, "inv"), (torch.linalg, "matrix_exp"),
                  (torch, "svd"), (torch, "qr"), (torch, "det"), (torch, "geqrf"), (torch, "matrix_exp")]
LARGEST = 16  # the only decompositions left are of k x k triangular systems in haar_frame; none of a random matrix


@pytest.fixture
def spy(monkeypatch):
    """Counts calls of every decomposition by (name, largest matrix side) and of the Householder products."""
    calls: Counter = Counter()

    def wrap(owner, name):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            side = max((a.shape[-1] for a in args if isinstance(a, torch.Tensor) and a.dim() >= 2), default=0)
            calls[(name, side)] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    for owner, name in DECOMPOSITIONS + [(torch.linalg, "householder_product")]:
        wrap(owner, name)
    return calls


@pytest.mark.parametrize("name", ["sc-fac-wrn10", "sc-fac-kwlarge", "sc-fac-resnet9", "sc-fac-wrn10-1-cifar10-small",
                                  "sc-fac-resflow-mnist-small"])
def test_building_registry_models_decomposes_no_large_matrix(spy, name):
    torch.manual_seed(0)
    model = zoo.create(name)
    big = {key: n for key, n in spy.items() if key[0] != "householder_product" and key[1] > LARGEST}
    assert not big, f"{name}: decompositions of large matrices while building: {big}"
    convs = [m for m in model.modules() if isinstance(m, _OrthoConvNd)]
    linears = [m for m in model.modules() if isinstance(m, OrthoLinear)]
    products = sum(n for key, n in spy.items() if key[0] == "householder_product")
    # one batched product for all the U's of a layer (plus one for a Haar Q under init="uniform"), none per matrix
    assert products <= 2 * len(convs) + len(linears)


def test_geotorch_sampling_is_not_run(spy):
    """geotorch's constructor and ``orthogonal()`` would each QR-factorise an n x n Gaussian matrix (and complete a
    frame with two more QRs); the layers never call them."""
    OrthoConv2d(64, 64, 5, init="uniform")
    OrthoLinear(300, 10)
    assert not [key for key in spy if key[0] == "qr"]


def _max_orthogonality_error(m: torch.Tensor) -> float:
    m = m.double()
    eye = torch.eye(m.shape[-1], dtype=torch.float64)
    return float((m.transpose(-1, -2) @ m - eye).abs().max())


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
@pytest.mark.parametrize("init", ["permutation", "uniform", "torus", "identical"])
def test_initial_factors_are_exactly_orthogonal_and_the_layer_starts_at_q(dtype, tol, init):
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        layer = OrthoConv2d(40, 40, 5, init=init)
    finally:
        torch.set_default_dtype(default)
    q = layer.q.base()  # (G, 2, C, C) views of the flat-stored bases
    u = layer.u.base()
    assert q.dtype == dtype and u.dtype == dtype
    assert _max_orthogonality_error(q) < tol and _max_orthogonality_error(u) < tol
    assert float(layer.q.parametrizations.weight.original.detach().abs().max()) == 0.0  # the value is the base: expm(0) = I
    for i in range(layer.n_left):  # U^(-l) = Q U^(l) and shared ranks (Proposition 7.2)
        assert torch.allclose(u[..., layer.n_right + i, :, :], (q.double() @ u[..., i, :, :].double()).to(dtype),
                              atol=10 * tol)
        assert torch.equal(layer.ranks[..., layer.n_right + i], layer.ranks[..., i])
    with torch.no_grad():
        w = layer.build_kernel().double()
    off = w.clone()
    off[:, :, 2, 2] = 0
    assert float(off.abs().max()) < 10 * tol  # the pairs cancel: the kernel is Q at its centre
    assert _max_orthogonality_error(w[:, :, 2, 2]) < 10 * tol


@pytest.mark.parametrize("shape", [(10, 300), (300, 10), (64, 64)])
def test_orthogonal_linear_starts_exactly_orthogonal_with_an_orthogonal_base(shape):
    torch.manual_seed(0)
    lin = OrthoLinear(shape[1], shape[0]).double()  # float32 base drawn, checked in float64
    base = lin.parametrizations.weight[0].base
    assert _max_orthogonality_error(base) < 1e-6
    w = lin.weight
    gram = w @ w.T if shape[0] < shape[1] else w.T @ w
    assert torch.allclose(gram, torch.eye(min(shape), dtype=torch.float64), atol=1e-6)
    if shape[0] == shape[1]:  # geotorch samples a square orthogonal weight from SO(n)
        assert abs(float(torch.linalg.det(w.detach())) - 1) < 1e-6


def test_haar_sampler_is_exactly_orthogonal_special_and_haar_distributed():
    """Moments of Haar O(n) entries: E q^2 = 1/n, E q^4 = 3 / (n (n + 2)); E tr Q = 0; det = +1 with special."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    q = haar_orthogonal((40000, 4, 4), torch.float64)
    assert _max_orthogonality_error(q) < 1e-14
    assert torch.allclose(torch.linalg.det(q), torch.ones(40000, dtype=torch.float64), atol=1e-12)
    n = 4
    entries = q.reshape(-1)
    # 640,000 entries: the sampling error of these means is about 1e-3; the tolerances are 5x that
    assert abs(float((entries ** 2).mean()) - 1 / n) < 5e-3
    assert abs(float((entries ** 4).mean()) - 3 / (n * (n + 2))) < 5e-3
    assert abs(float(q.diagonal(dim1=-2, dim2=-1).sum(-1).mean())) < 2e-2
    # the same sampler with a generator, no special flip: both determinants occur
    dets = torch.linalg.det(haar_orthogonal((2000, 3, 3), torch.float64, special=False, generator=gen))
    assert ((dets - 1).abs() < 1e-12).any() and ((dets + 1).abs() < 1e-12).any()


def test_haar_frame_columns_are_haar_and_the_completion_orthogonal():
    torch.manual_seed(0)
    f = haar_frame((30000,), 5, 2, torch.float64)
    assert _max_orthogonality_error(f) < 1e-14
    frame = f[..., :2].reshape(-1)
    assert abs(float((frame ** 2).mean()) - 1 / 5) < 5e-3
    assert abs(float((frame ** 4).mean()) - 3 / 35) < 5e-3


def test_torus_is_geotorch_s_exponential_in_closed_form():
    from geotorch.so import torus_init_

    torch.manual_seed(0)
    t = torus_matrices((3, 7, 7), torch.float64)
    assert _max_orthogonality_error(t) < 1e-15
    angles = torch.atan2(t[..., 1::2, 0:-1:2].diagonal(dim1=-2, dim2=-1), t[..., 0:-1:2, 0:-1:2].diagonal(dim1=-2, dim2=-1))

    def fill(diag):
        diag.copy_(angles)

    ref = torus_init_(torch.empty(3, 7, 7, dtype=torch.float64), init_=fill)
    assert torch.allclose(t, ref, atol=1e-12)


def test_building_does_not_import_timm_and_fx_leaves_follow_a_later_import():
    code = ("import sys, zoo; zoo.create('sc-fac-wrn10-1-cifar10-small'); assert 'timm' not in sys.modules; "
            "import timm; from timm.layers._fx import _leaf_modules; from zoo_scfac.layers import OrthoLinear, "
            "_OrthoConvNd; assert {OrthoLinear, _OrthoConvNd} <= set(_leaf_modules); "
            "assert timm.is_model('sc-fac-wrn22'); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
