"""SC-Fac composition order and padding (issue 18).

The 2-D system is ``H1(z1) H2(z2)`` (``width-first``, Sec. 7.3.3's text) or ``H2(z2) H1(z1)`` (``height-first``,
Algorithm 1 step 3 and umd-huang-lab/ortho-conv). The references here are dense operator matrices built from the
1-D systems by Kronecker products of tap matrices and shift matrices, independent of the layer's kernel code.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo_scfac.layers import ORDERS, OrthoConv1d, OrthoConv2d, orthogonal_values
from zoo_scfac.networks import LipschitzWideResNet
from zoo_scfac.spectral import dense_matrix


def _perturbed(layer: OrthoConv2d, seed: int = 1, scale: float = 0.3) -> OrthoConv2d:
    """Every parameter moved off the initial point (which is ``Q`` at the kernel centre: no spatial extent)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer


def _shift(n: int, offset: int) -> torch.Tensor:
    """``(n, n)`` circular shift: ``(S x)[i] = x[(i + offset) mod n]``."""
    s = torch.zeros(n, n)
    s[torch.arange(n), (torch.arange(n) + offset) % n] = 1.0
    return s


def _conv_1d(taps: torch.Tensor, n: int, axis: str, left: int, dilation: int = 1) -> torch.Tensor:
    """Dense matrix of the circular cross-correlation with ``taps`` ``(K, O, I)`` along ``axis`` of an ``(I, n, n)``
    input (``y[o, i] = sum_k taps[k, o, :] x[:, i + k d - left]``), identity along the other axis."""
    eye = torch.eye(n)
    total = 0
    for k, tap in enumerate(taps.contiguous()):
        tap = tap.contiguous()
        s = _shift(n, k * dilation - left)
        total = total + (torch.kron(torch.kron(tap, s), eye) if axis == "height" else torch.kron(tap, torch.kron(eye, s)))
    return total


def _systems(layer: OrthoConv2d) -> torch.Tensor:
    """The layer's 1-D systems ``(2, K, C, C)`` (one group): height ``H1``, width ``H2``."""
    assert layer.groups == 1
    return layer._systems()[0]


@pytest.mark.parametrize("c_in, c_out", [(4, 4), (3, 5), (6, 2)])
@pytest.mark.parametrize("k, d", [(3, 1), (5, 1), (3, 2), (4, 1)])
def test_each_order_is_its_product_of_1d_operators(f64, c_in, c_out, k, d):
    """width-first = H(H1 rows T) @ W(H2 cols S); height-first = W(H2 rows T) @ H(H1 cols S), on the dense matrices."""
    n = 7
    for order in ORDERS:
        layer = _perturbed(OrthoConv2d(c_in, c_out, k, dilation=d, init="uniform", bias=False, order=order)).eval()
        h1, h2 = _systems(layer)
        left = d * layer.n_left
        if order == "width-first":
            ref = _conv_1d(h1[:, :c_out, :], n, "height", left, d) @ _conv_1d(h2[:, :, :c_in], n, "width", left, d)
        else:
            ref = _conv_1d(h2[:, :c_out, :], n, "width", left, d) @ _conv_1d(h1[:, :, :c_in], n, "height", left, d)
        op = dense_matrix(layer, (c_in, n, n))
        assert torch.allclose(op, ref, atol=1e-12), order


def test_the_orders_differ_on_the_same_factors_and_agree_on_commuting_ones(f64):
    torch.manual_seed(0)
    wf = _perturbed(OrthoConv2d(4, 4, 3, init="uniform", order="width-first"))
    hf = OrthoConv2d(4, 4, 3, init="uniform", order="height-first")
    hf.load_state_dict(wf.state_dict())
    a, b = wf.build_kernel(), hf.build_kernel()
    assert (a - b).abs().max() > 1e-2  # different operators: the 1-D systems do not commute
    assert (a - b.transpose(0, 1)).abs().max() > 1e-2  # and not channel transposes of each other either
    one = OrthoConv2d(1, 1, 3, init="uniform", order="height-first")  # scalar systems commute
    one.load_state_dict(_perturbed(OrthoConv2d(1, 1, 3, init="uniform")).state_dict())
    ref = OrthoConv2d(1, 1, 3, init="uniform")
    ref.load_state_dict(one.state_dict())
    assert torch.allclose(one.build_kernel(), ref.build_kernel(), atol=1e-14)


@pytest.mark.parametrize("c_in, c_out", [(4, 4), (2, 6)])
def test_height_first_is_the_adjoint_of_width_first_on_para_conjugate_systems(f64, c_in, c_out):
    """``Op_hf(H1, H2) = Op_wf(H1~, H2~)^T`` with ``H~[k] = H[K - 1 - k]^T`` (odd K: centred taps), on dense
    operators of the tap tensors (the layer kernel against the 1-D reference of the adjoint pair)."""
    n, k = 6, 5
    layer = _perturbed(OrthoConv2d(c_in, c_out, k, init="uniform", bias=False, order="height-first")).eval()
    h1, h2 = _systems(layer)
    tilde1, tilde2 = h1.flip(0).transpose(-1, -2), h2.flip(0).transpose(-1, -2)
    left = layer.n_left
    wf_tilde = _conv_1d(tilde1[:, :c_in, :], n, "height", left) @ _conv_1d(tilde2[:, :, :c_out], n, "width", left)
    assert torch.allclose(dense_matrix(layer, (c_in, n, n)), wf_tilde.T, atol=1e-12)


def _transposed_factors(layer: OrthoConv2d) -> tuple:
    """Factors of the tap-wise transposed systems ``H^T`` in the same factorisation (odd ``K'``, ``L- = L+``):
    ``H^T = G_L^T .. G_1^T Q^T F_1^T .. F_L^T``, and ``[I - P, P]^T`` on the left is a left factor ``[P', I - P']``
    with ``P' = I - P``, ``[P, I - P]^T`` on the right a right factor with ``P' = I - P``. ``I - V_N V_N^T`` is the
    projector on the other ``C - N`` columns of the same frame ``V``: roll them to the front.

    Returns ``(Q^T, U', ranks')`` in the layer's shapes ``(G, 2, C, C)``, ``(G, 2, K' - 1, C, C)``, ``(G, 2, K' - 1)``."""
    q, u = orthogonal_values([layer.q, layer.u], torch.float64)
    c, half = layer.width, layer.n_right
    assert layer.n_left == half
    cols = (torch.arange(c) + layer.ranks.unsqueeze(-1)) % c  # (G, 2, K'-1, C): columns N.., then 0..N-1
    rolled = torch.gather(u, -1, cols.unsqueeze(-2).expand_as(u))
    swap = torch.cat((torch.arange(half, 2 * half), torch.arange(half)))  # right factors <-> left factors
    return q.transpose(-1, -2), rolled[:, :, swap], (c - layer.ranks)[:, :, swap]


@pytest.mark.parametrize("c_in, c_out, k, g", [(4, 4, 3, 1), (3, 6, 5, 1), (8, 4, 3, 2), (4, 4, 1, 1)])
def test_height_first_kernels_are_channel_transposes_of_width_first_kernels(f64, c_in, c_out, k, g):
    """The issue's claim, made exact: a height-first ``S -> T`` kernel is the channel transpose (no spatial flip) of
    the width-first ``T -> S`` kernel of the transposed systems, and those are factorised systems of the same
    family; so the two orders span channel-transposed kernel families (odd ``K``)."""
    hf = _perturbed(OrthoConv2d(c_in, c_out, k, groups=g, init="uniform", order="height-first"))
    wf = OrthoConv2d(c_out, c_in, k, groups=g, init="uniform", order="width-first")
    if k > 1:
        q, u, ranks = _transposed_factors(hf)
        wf.u.set_(u)
        wf.ranks.copy_(ranks)
    else:
        (q,) = orthogonal_values([hf.q], torch.float64)
        q = q.transpose(-1, -2)
    wf.q.set_(q)
    a = hf.build_kernel()  # (T, S / g, K, K)
    b = wf.build_kernel()  # (S, T / g, K, K)
    per_group = [blk.transpose(0, 1) for blk in b.chunk(g, dim=0)]  # transpose within each group's block
    assert torch.allclose(a, torch.cat(per_group, dim=0).reshape(a.shape), atol=1e-12)


def _orthogonality(layer: OrthoConv2d, shape: tuple) -> torch.Tensor:
    return torch.linalg.svdvals(dense_matrix(layer.eval(), shape))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("c_in, c_out, k, r, d, g", [
    (4, 4, 3, 1, 1, 1), (4, 4, 4, 1, 2, 2), (2, 8, 4, 2, 1, 1), (4, 8, 3, 1, 1, 1), (8, 4, 5, 1, 1, 2),
    (2, 4, 2, 2, 1, 1),
])
def test_both_orders_are_exactly_orthogonal(f64, order, c_in, c_out, k, r, d, g):
    """Singular values of the dense circular operator: all 1 (orthogonal, T = S R^2), the input dimension of them
    1 (isometry, T > S R^2) or the output dimension (co-isometry, T < S R^2), to float64 rounding."""
    n = 8
    layer = _perturbed(OrthoConv2d(c_in, c_out, k, stride=r, dilation=d, groups=g, init="uniform", bias=False,
                                   order=order))
    sv = _orthogonality(layer, (c_in, n, n))
    rank = min(c_in * n * n, c_out * n * n // r**2)
    assert torch.allclose(sv[:rank], torch.ones(rank), atol=1e-12)
    assert sv[rank:].abs().max() < 1e-12 if sv.numel() > rank else True


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("c_in, c_out, k, r, d", [(4, 4, 3, 1, 1), (4, 4, 5, 1, 2), (2, 8, 4, 2, 1), (3, 6, 3, 1, 1)])
def test_full_padding_is_norm_preserving(order, c_in, c_out, k, r, d):
    """``padding="full"``: every output of the linear convolution, ``N / R + D (K / R - 1)`` per side, and
    ``||y|| = ||x||`` for a square (T = S R^2) or tall (isometry) layer, on random inputs (float32, 1e-5)."""
    torch.manual_seed(0)
    layer = _perturbed(OrthoConv2d(c_in, c_out, k, stride=r, dilation=d, init="uniform", bias=False,
                                   padding_mode="zeros", padding="full", order=order))
    x = torch.randn(3, c_in, 12, 12)
    y = layer(x)
    side = 12 // r + d * (k // r - 1)
    assert y.shape == (3, c_out, side, side)
    ratio = y.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.ones(3), atol=1e-5)
    layer.train()
    if layer.separable:
        torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-5)  # the separable path pads the same way


@pytest.mark.parametrize("order", ORDERS)
def test_full_padding_is_an_exact_isometry_of_the_dense_operator(f64, order):
    layer = _perturbed(OrthoConv2d(3, 3, 3, init="uniform", bias=False, padding_mode="zeros", padding="full",
                                   order=order))
    a = dense_matrix(layer.eval(), (3, 5, 5))  # (3 * 7 * 7, 3 * 5 * 5)
    assert a.shape == (147, 75)
    assert torch.allclose(a.T @ a, torch.eye(75), atol=1e-12)


@pytest.mark.parametrize("order", ORDERS)
def test_cropped_zero_padding_is_not_norm_preserving(order):
    """``padding_mode="zeros"``, ``padding="same"`` crops the full output to ``N``: 1-Lipschitz, and it loses the
    energy leaking over the border (ratio < 1 on random inputs); the full output of the same layer keeps it."""
    torch.manual_seed(0)
    same = _perturbed(OrthoConv2d(4, 4, 5, init="uniform", bias=False, padding_mode="zeros", order=order)).eval()
    full = OrthoConv2d(4, 4, 5, init="uniform", bias=False, padding_mode="zeros", padding="full", order=order).eval()
    full.load_state_dict(same.state_dict())
    x = torch.randn(8, 4, 8, 8)
    crop_ratio = same(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    full_ratio = full(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert float(crop_ratio.max()) < 0.99
    assert torch.allclose(full_ratio, torch.ones(8), atol=1e-5)
    centre = full(x)[..., 2:-2, 2:-2]
    torch.testing.assert_close(same(x), centre)  # same = the full output cropped to the input size


@pytest.mark.parametrize("c_in, c_out, k, d, g, mode, padding", [
    (6, 6, 3, 1, 1, "circular", "same"), (4, 8, 5, 2, 1, "zeros", "same"), (8, 8, 3, 2, 2, "zeros", "full"),
    (6, 6, 4, 1, 1, "circular", "same"), (4, 6, 5, 1, 2, "zeros", "full"),
])
def test_height_first_separable_forward_equals_the_dense_kernel(f64, c_in, c_out, k, d, g, mode, padding):
    layer = _perturbed(OrthoConv2d(c_in, c_out, k, dilation=d, groups=g, padding_mode=mode, padding=padding,
                                   init="uniform", order="height-first"))
    x = torch.randn(2, c_in, 10, 10)
    dense = torch.nn.functional.conv2d(layer.pad(x), layer.build_kernel(), layer.bias, 1, 0, d, g)
    sep = layer.separable_forward(x)
    assert torch.allclose(sep, dense, atol=1e-12)
    probe = torch.randn_like(dense)
    weights = [p for p in layer.parameters() if p.requires_grad]
    for a, b in zip(torch.autograd.grad((sep * probe).sum(), weights), torch.autograd.grad((dense * probe).sum(), weights)):
        assert torch.allclose(a, b, atol=1e-10)


def test_invalid_order_and_padding_raise():
    with pytest.raises(ValueError, match="order must be one of"):
        OrthoConv2d(4, 4, 3, order="official")
    with pytest.raises(ValueError, match="one system"):
        OrthoConv1d(4, 4, 3, order="height-first")
    with pytest.raises(ValueError, match="padding_mode='zeros' only"):
        OrthoConv2d(4, 4, 3, padding="full")
    with pytest.raises(ValueError, match="padding must be one of"):
        OrthoConv2d(4, 4, 3, padding="valid", padding_mode="zeros")


def test_order_reaches_every_convolution_through_the_builders_and_registry_args():
    net = LipschitzWideResNet(depth=10, widen_factor=1, kernel_size=3, order="height-first", downsample="stride-wide")
    convs = [m for m in net.modules() if isinstance(m, OrthoConv2d)]
    assert convs and {m.order for m in convs} == {"height-first"}
    model = zoo.create("sc-fac-wrn10-1-cifar10-small", order="height-first")
    assert {m.order for m in model.modules() if isinstance(m, OrthoConv2d)} == {"height-first"}
    assert {m.order for m in zoo.create("sc-fac-wrn10-1-cifar10-small").modules()
            if isinstance(m, OrthoConv2d)} == {"width-first"}  # the default (Sec. 7.3.3's text)
