"""Orthogonality of every SC-Fac variant against independent references (FFT spectra, dense SVD, closed forms)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from zoo_scfac.initialization import INITS
from zoo_scfac.layers import OrthoConv1d, OrthoConv2d, OrthoLinear, reorthogonalize_
from zoo_scfac.paraunitary import paraunitary_1d, projectors, separable_2d
from zoo_scfac.spectral import circular_singular_values, dense_singular_values, dilate_kernel

F64_TOL = 1e-12
F32_TOL = 1e-5


def _group_spectrum(layer: OrthoConv2d, n: int) -> torch.Tensor:
    """FFT singular values of each group's stride-1 circular operator (Sedghi et al.), concatenated."""
    w = layer.build_kernel().detach()
    tg = layer.out_channels // layer.groups
    vals = [circular_singular_values(w[g * tg:(g + 1) * tg], n, layer.dilation) for g in range(layer.groups)]
    return torch.cat(vals)


def test_factorization_is_unitary_on_the_unit_circle(f64):
    """Eq. 7.3 evaluated directly: sum_k h[k] e^{jwk} is unitary at random frequencies."""
    torch.manual_seed(0)
    c = 5
    q = torch.linalg.qr(torch.randn(c, c)).Q
    frames = torch.linalg.qr(torch.randn(4, c, c)).Q
    p = projectors(frames, torch.tensor([1, 3, 5, 2]))
    h = paraunitary_1d(q, p[:3], p[3:])
    assert h.shape == (5, c, c)
    for w in torch.rand(7) * 2 * math.pi:
        phase = torch.exp(1j * w * torch.arange(5))
        hw = (h.to(torch.complex128) * phase[:, None, None]).sum(0)
        assert torch.allclose(hw.conj().T @ hw, torch.eye(c, dtype=torch.complex128), atol=1e-13)


def test_projectors_are_idempotent_with_given_rank(f64):
    frames = torch.linalg.qr(torch.randn(3, 6, 6)).Q
    p = projectors(frames, torch.tensor([0, 2, 6]))
    assert torch.allclose(p @ p, p, atol=1e-13) and torch.allclose(p, p.transpose(-1, -2))
    assert [round(float(t)) for t in p.diagonal(dim1=-2, dim2=-1).sum(-1)] == [0, 2, 6]


STRIDE1 = [  # (in, out, kernel, dilation, groups)
    (c_in, c_out, k, d, g)
    for (c_in, c_out), k, d, g in itertools.product([(4, 4), (4, 8), (8, 4)], [1, 3, 5], [1, 2], [1, 2, 4])
    if not (k == 1 and d == 2)
]


@pytest.mark.parametrize("c_in,c_out,k,d,g", STRIDE1)
def test_stride1_variants_fft_spectrum_float64(f64, c_in, c_out, k, d, g):
    torch.manual_seed(k * 100 + d * 10 + g)
    layer = OrthoConv2d(c_in, c_out, k, dilation=d, groups=g, init="uniform")
    with torch.no_grad():  # move away from the initial delta kernel
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    sv = _group_spectrum(layer, n=12)
    assert sv.numel() == 144 * min(c_in, c_out)
    assert float((sv - 1).abs().max()) < F64_TOL


@pytest.mark.parametrize("c_in,c_out,k,d,g", [(4, 4, 5, 1, 1), (4, 8, 3, 2, 2), (8, 4, 3, 1, 4)])
def test_stride1_variants_fft_spectrum_float32(c_in, c_out, k, d, g):
    torch.manual_seed(1)
    layer = OrthoConv2d(c_in, c_out, k, dilation=d, groups=g, init="uniform")
    assert float((_group_spectrum(layer, n=12) - 1).abs().max()) < F32_TOL


STRIDED = [  # (in, out, kernel, stride, groups): out = in R^2, out > in R^2, out < in R^2
    (2, 8, 2, 2, 1), (2, 8, 4, 2, 1), (2, 8, 6, 2, 1), (4, 16, 4, 2, 2), (4, 8, 2, 2, 1), (4, 32, 4, 2, 4),
    (2, 12, 4, 2, 1), (4, 4, 4, 2, 2), (1, 9, 3, 3, 1),
]


@pytest.mark.parametrize("c_in,c_out,k,r,g", STRIDED)
def test_strided_variants_dense_spectrum(f64, c_in, c_out, k, r, g):
    """Dense matrix of the strided operator (independent of the polyphase algebra): all non-zero sigma = 1."""
    torch.manual_seed(k + r + g)
    layer = OrthoConv2d(c_in, c_out, k, stride=r, groups=g, bias=False, init="torus")
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    n = 6 if r == 3 else 8
    sv = dense_singular_values(layer, (c_in, n, n))
    rank = min(c_out * (n // r) ** 2, c_in * n * n)
    assert float((sv[:rank] - 1).abs().max()) < F64_TOL
    assert _tail(sv, rank) < F64_TOL


def test_fft_and_dense_spectra_agree(f64):
    torch.manual_seed(3)
    w = torch.randn(3, 3, 3, 3)  # a generic, non-orthogonal kernel
    conv = lambda x: torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="circular"), w, dilation=2)
    dense = dense_singular_values(conv, (3, 8, 8))
    fft = circular_singular_values(w, 8, dilation=2).sort(descending=True).values
    assert torch.allclose(dense, fft, atol=1e-10)
    assert float((dense - 1).abs().max()) > 0.1


@pytest.mark.parametrize("c_in,c_out,k,r", [(3, 3, 5, 1), (2, 4, 3, 1), (4, 2, 3, 1), (2, 4, 2, 2), (2, 4, 4, 2)])
def test_orthoconv1d_dense_spectrum(f64, c_in, c_out, k, r):
    torch.manual_seed(k)
    layer = OrthoConv1d(c_in, c_out, k, stride=r, bias=False, init="uniform")
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    sv = dense_singular_values(layer, (c_in, 16))
    rank = min(c_out * 16 // r, c_in * 16)
    assert float((sv[:rank] - 1).abs().max()) < F64_TOL and _tail(sv, rank) < F64_TOL


@pytest.mark.parametrize("c_in,c_out,k,r,d,g", [(4, 4, 3, 1, 1, 1), (4, 8, 5, 1, 2, 2), (2, 8, 4, 2, 1, 1)])
def test_norm_preservation_on_random_inputs(c_in, c_out, k, r, d, g):
    torch.manual_seed(0)
    layer = OrthoConv2d(c_in, c_out, k, stride=r, dilation=d, groups=g, bias=False, init="uniform")
    x = torch.randn(5, c_in, 16, 16)
    y = layer(x)
    assert y.shape == (5, c_out, 16 // r, 16 // r)
    assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-5)


def test_zero_padding_is_one_lipschitz_but_not_orthogonal(f64):
    torch.manual_seed(0)
    layer = OrthoConv2d(3, 3, 3, bias=False, padding_mode="zeros", init="uniform")
    layer.ranks.fill_(1)  # not the draw's luck: projectors of rank N = C would make every factor a pure shift (1x1 kernel)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    sv = dense_singular_values(layer, (3, 6, 6))
    assert float(sv.max()) <= 1 + 1e-12
    assert float(sv.min()) < 0.999


@pytest.mark.parametrize("init", INITS)
def test_initialisations_give_a_centred_orthogonal_matrix(f64, init):
    torch.manual_seed(0)
    layer = OrthoConv2d(6, 6, 5, init=init)
    w = layer.build_kernel().detach()
    centre = w[:, :, 2, 2]
    off = w.clone()
    off[:, :, 2, 2] = 0
    assert float(off.abs().max()) < 1e-12  # pairs U^(-l) = Q U^(l) cancel (Proposition 7.2)
    assert torch.allclose(centre @ centre.T, torch.eye(6), atol=1e-12)
    if init == "identical":
        assert torch.allclose(centre, torch.eye(6), atol=1e-12)
    if init == "permutation":
        assert torch.allclose(centre.abs().round(), centre.abs(), atol=1e-12) and torch.all(centre.round() >= 0)


def test_stays_orthogonal_after_optimizer_steps():
    torch.manual_seed(0)
    layer = OrthoConv2d(4, 8, 3, groups=2, dilation=2)
    before = layer.build_kernel().detach().clone()
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    x, target = torch.randn(2, 4, 8, 8), torch.randn(2, 8, 8, 8)
    for _ in range(5):
        opt.zero_grad()
        ((layer(x) - target) ** 2).mean().backward()
        opt.step()
    assert float((layer.build_kernel().detach() - before).abs().max()) > 1e-2  # it did learn
    assert float((_group_spectrum(layer, 10) - 1).abs().max()) < F32_TOL


def test_eval_cache_equals_training_kernel_and_is_invalidated():
    torch.manual_seed(0)
    layer = OrthoConv2d(4, 4, 3, init="uniform")
    layer.ranks.fill_(2)  # not the draw's luck: with rank N = C the kernel does not depend on U at all
    x = torch.randn(2, 4, 8, 8)
    train_kernel = layer.kernel().detach().clone()
    train_out = layer(x).detach()
    layer.eval()
    k1 = layer.kernel()
    assert layer.kernel() is k1  # built once
    assert torch.equal(k1, train_kernel)
    assert torch.allclose(layer(x), train_out, atol=1e-6)  # training applied the separable form of the same operator
    with torch.no_grad():
        orig = layer.u.parametrizations.weight.original
        orig.add_(0.1 * torch.randn_like(orig))  # any in-place change invalidates
    k2 = layer.kernel()
    assert k2 is not k1 and not torch.allclose(k1, k2)
    other = OrthoConv2d(4, 4, 3, init="uniform")
    layer.load_state_dict(other.state_dict())
    assert torch.allclose(layer.kernel(), other.build_kernel().detach())


def test_state_dict_round_trip_into_a_fresh_build():
    torch.manual_seed(0)
    a = OrthoConv2d(4, 8, 5, groups=2)
    torch.manual_seed(1)
    b = OrthoConv2d(4, 8, 5, groups=2)
    x = torch.randn(1, 4, 8, 8)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


def _kernel_from(layer: OrthoConv2d, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The layer's kernel as a function of geotorch's unconstrained tensors ``a`` (Q) and ``b`` (U's)."""
    q = layer.q.parametrizations.weight[0](a).view(layer.q.shape)  # stored flat: (G * 2, C, C) -> (G, 2, C, C)
    u = layer.u.parametrizations.weight[0](b).view(layer.u.shape)
    p = projectors(u, layer.ranks)
    h = paraunitary_1d(q, p[:, :, : layer.n_right], p[:, :, layer.n_right:])
    return separable_2d(h[:, 0], h[:, 1]).reshape(layer.out_channels, layer.cols, 3, 3)


def test_gradcheck_float64(f64):
    torch.manual_seed(0)
    layer = OrthoConv2d(2, 2, 3, init="uniform")
    a = layer.q.parametrizations.weight.original.detach().clone().requires_grad_(True)
    b = layer.u.parametrizations.weight.original.detach().clone().requires_grad_(True)
    assert torch.allclose(_kernel_from(layer, a, b), layer.build_kernel())
    assert torch.autograd.gradcheck(lambda a, b: _kernel_from(layer, a, b), (a, b), eps=1e-6, atol=1e-7)


def test_float64_factors_keep_float32_layers_accurate():
    """Large-norm skew parameters: native float32 factors drift, float64 factors (the default) do not."""
    errors = {}
    for fd in (None, torch.float64):
        torch.manual_seed(0)
        layer = OrthoConv2d(48, 48, 5, init="uniform", factor_dtype=fd)
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.2 * torch.randn_like(p))
            w = layer.build_kernel()
        assert w.dtype == torch.float32 and w.is_contiguous()
        errors[fd] = float((circular_singular_values(w.double(), 8) - 1).abs().max())
    assert errors[torch.float64] < 2e-6 < errors[None]


def test_reorthogonalize_reaches_float64_precision():
    layer = OrthoConv2d(4, 4, 3, init="uniform").double()
    assert float((circular_singular_values(layer.build_kernel().detach(), 8) - 1).abs().max()) > 1e-12
    reorthogonalize_(layer)
    assert float((circular_singular_values(layer.build_kernel().detach(), 8) - 1).abs().max()) < F64_TOL
    lin = reorthogonalize_(OrthoLinear(12, 4).double())
    assert torch.allclose(lin.weight @ lin.weight.T, torch.eye(4, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel_size=3, stride=2), "multiple of stride"),
    (dict(kernel_size=4, stride=2, dilation=2), "not supported"),
    (dict(kernel_size=3, groups=3), "divisible by groups"),
    (dict(kernel_size=3, padding_mode="reflect"), "padding_mode"),
    (dict(kernel_size=3, init="orthogonal"), "init must be one of"),
    (dict(kernel_size=(3, 5)), "equal ints"),
])
def test_invalid_combinations_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OrthoConv2d(4, 4, **kwargs)


def test_input_size_not_divisible_by_stride_raises():
    with pytest.raises(ValueError, match="divisible by stride"):
        OrthoConv2d(2, 8, 2, stride=2)(torch.randn(1, 2, 7, 8))


def _tail(sv: torch.Tensor, rank: int) -> float:
    """Largest singular value beyond the expected rank (0 when there is none)."""
    return float(sv[rank:].abs().max()) if sv.numel() > rank else 0.0


def test_eval_cache_sees_assigned_state_dicts_dtype_changes_and_copies():
    import copy

    torch.manual_seed(0)
    layer = OrthoConv2d(4, 4, 3, init="uniform", bias=False).eval()  # no own parameter that assign= would set
    x = torch.randn(2, 4, 8, 8)
    first = layer(x)
    assert layer(x) is not None and "_key_tensors" in layer.__dict__  # the key's tensor list is now cached
    other = OrthoConv2d(4, 4, 3, init="uniform", bias=False)
    layer.load_state_dict(other.state_dict(), assign=True)  # new Parameter objects, not an in-place copy
    torch.testing.assert_close(layer(x), other.eval()(x))
    assert not torch.allclose(layer(x), first)
    layer(x)
    layer.double()
    assert layer.kernel().dtype == torch.float64
    torch.testing.assert_close(layer(x.double()), other.double()(x.double()))
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        orig = twin.q.parametrizations.weight.original
        orig.add_(0.1 * torch.randn_like(orig))
    assert not torch.allclose(twin.kernel(), layer.kernel())  # the copy keys on its own tensors
    torch.testing.assert_close(twin.kernel(), twin.build_kernel())
