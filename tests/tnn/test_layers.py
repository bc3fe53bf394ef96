"""Tensorial layers against dense references: reconstruct-then-conv, hand-written kernels, full rank."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo_tnn.decompositions import build_network, get_decomposition
from zoo_tnn.decompositions.base import make_layout
from zoo_tnn.fit import fit_network
from zoo_tnn.layers import TensorialConv2d, TensorialLinear

BUILTIN = ["cp", "tk", "tt", "tr", "svd", "mcp", "mtk", "mtt", "mtr"]
D = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize(
    "geom",
    [dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=3, stride=2, padding=1, dilation=1),
     dict(kernel_size=(3, 1), stride=(2, 1), padding=(2, 0), dilation=(2, 1)), dict(kernel_size=1, stride=2)],
)
def test_conv_equals_reconstruct_then_conv(name: str, geom: dict) -> None:
    layer = TensorialConv2d(12, 18, decomposition=name, rank=3, dtype=D, **geom)
    x = torch.randn(2, 12, 9, 8, dtype=D)
    ref = F.conv2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    out = layer(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", BUILTIN)
def test_linear_equals_reconstruct_then_matmul(name: str) -> None:
    layer = TensorialLinear(24, 30, decomposition=name, rank=2, dtype=D)
    x = torch.randn(3, 4, 24, dtype=D)
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias, rtol=1e-10, atol=1e-10)


def _hand_kernel(name: str, f: list[torch.Tensor], t: int, s: int) -> torch.Tensor:
    """Reconstructions written directly from Fig. 2.10 / Eq. (2.3) / Section 3.3.3 (m = 3 where reshaped)."""
    if name == "cp":  # W[t,s,h,w] = sum_r A[r,t] B[r,s] C[r,h] D[r,w]
        return torch.einsum("rt,rs,rh,rw->tshw", *f)
    if name == "tk":  # P[s,a] core[a,b,h,w] Q[b,t]
        return torch.einsum("sa,abhw,bt->tshw", *f)
    if name == "tt":  # S - H - W - T train
        return torch.einsum("sa,ahb,bwc,ct->tshw", *f)
    if name == "svd":
        return torch.einsum("shwr,rt->tshw", *f)
    if name == "mcp":  # K_i[r, s_i, t_i], K_3[r, h, w]
        k = torch.einsum("rad,rbe,rcf,rhw->abcdefhw", *f)  # a,b,c = s modes; d,e,f = t modes
    elif name == "mtt":  # K0[s0,t0,r0] K1[r0,s1,t1,r1] K2[r1,s2,t2,r2] K3[r2,h,w]
        k = torch.einsum("adx,xbey,ycfz,zhw->abcdefhw", *f)
    elif name == "mtr":
        k = torch.einsum("uadx,xbey,ycfz,zhwu->abcdefhw", *f)
    else:
        raise AssertionError(name)
    kh, kw = k.shape[-2:]
    return k.permute(3, 4, 5, 0, 1, 2, 6, 7).reshape(t, s, kh, kw)


@pytest.mark.parametrize("name", ["cp", "tk", "tt", "svd", "mcp", "mtt", "mtr"])
def test_layer_kernel_matches_hand_written_reconstruction(name: str) -> None:
    layer = TensorialConv2d(8, 27, 3, padding=1, decomposition=name, rank=2, dtype=D)
    assert [tuple(p.shape) for p in layer.factor_list()] == [f.shape for f in layer.network.factors]
    ref = _hand_kernel(name, layer.factor_list(), 27, 8)
    torch.testing.assert_close(layer.weight, ref)
    x = torch.randn(2, 8, 6, 6, dtype=D)
    torch.testing.assert_close(layer(x), F.conv2d(x, ref, layer.bias, padding=1))


@pytest.mark.parametrize("name", BUILTIN)
def test_full_rank_factors_reproduce_the_dense_kernel(name: str) -> None:
    dec = get_decomposition(name)
    conv = nn.Conv2d(8, 12, 3, padding=1, dtype=D)
    full = dec.full_rank(make_layout(12, 8, (3, 3), 3 if dec.reshaped else 1))
    layer = TensorialConv2d.from_dense(conv, name, rank=full, init="decomp", sweeps=0)
    assert layer.fit_error < 1e-10
    x = torch.randn(2, 8, 7, 7, dtype=D)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", BUILTIN)
def test_layer_decomp_error_falls_with_rank_and_als_helps(name: str) -> None:
    dec = get_decomposition(name)
    w = torch.randn(16, 16, 3, 3, dtype=D)
    errs = []
    for rank in (1, 4):
        res = fit_network(build_network(dec, 16, 16, (3, 3), rank), w, sweeps=8)
        assert res.relative_error <= res.initial_error + 1e-12
        assert 0 < res.relative_error < 1.0
        errs.append(res.relative_error)
    assert errs[1] < errs[0]


def test_layer_decomp_of_a_low_rank_kernel_is_exact() -> None:
    # a CP-rank-2 kernel: ALS must recover it from the SVD start
    a, b, c, d = (torch.randn(2, n, dtype=D) for n in (10, 6, 3, 3))
    w = torch.einsum("rt,rs,rh,rw->tshw", a, b, c, d)
    res = fit_network(build_network(get_decomposition("cp"), 10, 6, (3, 3), 2), w, sweeps=200)
    assert res.relative_error < 1e-4


@pytest.mark.parametrize("name", ["mcp", "mtr", "tk"])
def test_gradcheck_float64(name: str) -> None:
    layer = TensorialConv2d(4, 6, 3, stride=2, padding=1, decomposition=name, rank=2, m=2, dtype=D)
    x = torch.randn(1, 4, 4, 4, dtype=D, requires_grad=True)
    params = layer.factor_list()

    def fn(x: torch.Tensor, *fs: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, {f"factors.{n.name}": t for n, t in zip(layer.network.factors, fs)}, (x,))

    assert torch.autograd.gradcheck(fn, (x, *[p.detach().requires_grad_() for p in params]))


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_padding_modes_and_bias_match_nn_conv2d(mode: str) -> None:
    conv = nn.Conv2d(6, 10, 3, stride=1, padding=2, dilation=2, padding_mode=mode, dtype=D)
    layer = TensorialConv2d.from_dense(conv, "mtt", rank=2)
    assert layer.padding_mode == mode and layer.bias is not None
    torch.testing.assert_close(layer.bias, conv.bias)
    dense = layer.to_dense()
    x = torch.randn(2, 6, 8, 9, dtype=D)
    torch.testing.assert_close(layer(x), dense(x))


def test_same_padding_and_feature_maps_smaller_than_the_kernel() -> None:
    layer = TensorialConv2d(4, 6, 4, padding="same", decomposition="cp", rank=3, dtype=D)
    x = torch.randn(1, 4, 3, 2, dtype=D)  # smaller than the 4x4 kernel
    torch.testing.assert_close(layer(x), layer.to_dense()(x))
    strided = TensorialConv2d(4, 6, 3, stride=2, padding=1, decomposition="mcp", rank=2, dtype=D)
    x = torch.randn(2, 4, 2, 2, dtype=D)
    torch.testing.assert_close(strided(x), strided.to_dense()(x))


def test_constructor_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="exactly one of rank or rate"):
        TensorialConv2d(4, 4, 3, decomposition="cp")
    with pytest.raises(ValueError, match="exactly one of rank or rate"):
        TensorialConv2d(4, 4, 3, decomposition="cp", rank=2, rate=0.1)
    with pytest.raises(KeyError, match="unknown decomposition"):
        TensorialConv2d(4, 4, 3, decomposition="xyz", rank=2)
    with pytest.raises(ValueError, match="does not support grouped"):
        TensorialConv2d.from_dense(nn.Conv2d(4, 4, 3, groups=2), "cp", rank=2)
    layer = TensorialConv2d(4, 4, 3, decomposition="cp", rank=2)
    with pytest.raises(ValueError, match=r"expected input \(B, 4, H, W\)"):
        layer(torch.randn(1, 5, 8, 8))


def test_he_initialisation_scale() -> None:
    layer = TensorialConv2d(64, 64, 3, padding=1, decomposition="mtt", rate=0.1)
    fan_in = 64 * 9
    var = torch.stack([TensorialConv2d(64, 64, 3, decomposition="mtt", rate=0.1).weight.var() for _ in range(20)]).mean()
    assert 0.5 < float(var.detach()) * fan_in / 2.0 < 2.0
    assert layer.rate <= 0.1


@pytest.mark.parametrize("name", BUILTIN)
def test_full_rank_linear_factors_reproduce_the_dense_weight(name: str) -> None:
    dec = get_decomposition(name)
    lin = nn.Linear(12, 20, dtype=D)
    full = dec.full_rank(make_layout(20, 12, (), 3 if dec.reshaped else 1))
    layer = TensorialLinear.from_dense(lin, name, rank=full, init="decomp", sweeps=0)
    assert layer.fit_error < 1e-10
    x = torch.randn(5, 12, dtype=D)
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", BUILTIN)
def test_factorised_and_reconstruct_first_paths_agree(name: str) -> None:
    layer = TensorialConv2d(12, 18, 3, stride=2, padding=1, decomposition=name, rank=3, dtype=D)
    x = torch.randn(2, 12, 9, 9, dtype=D)
    ref = F.conv2d(x, layer.weight, layer.bias, stride=2, padding=1)
    outs = []
    for ratio in (float("inf"), 0.0):  # always the factorised sequence / always reconstruct first
        layer._plans.clear()
        layer.path_ratio = ratio
        outs.append(layer(x))
        assert len(layer._plans) == 1
    torch.testing.assert_close(outs[0], ref)
    torch.testing.assert_close(outs[1], ref)
    lin = TensorialLinear(24, 30, decomposition=name, rank=2, dtype=D)
    lin.path_ratio = 0.0
    x = torch.randn(5, 24, dtype=D)
    torch.testing.assert_close(lin(x), x @ lin.weight.T + lin.bias)


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect"])
@pytest.mark.parametrize("name", ["cp", "mtr"])
def test_pointwise_convolutions_are_channel_contractions(mode: str, name: str) -> None:
    conv = nn.Conv2d(16, 24, 1, stride=2, padding=1, padding_mode=mode, dtype=D)
    layer = TensorialConv2d.from_dense(conv, name, rate=0.3)
    assert layer.pointwise and not layer.network.kernel_modes and "|" not in layer.network.pointwise_equation
    assert layer.weight.shape == (24, 16, 1, 1)
    x = torch.randn(2, 16, 7, 6, dtype=D)
    torch.testing.assert_close(layer(x), layer.to_dense()(x))
    full = TensorialConv2d.from_dense(conv, "tk", rank=24, init="decomp", sweeps=0)
    torch.testing.assert_close(full(x), conv(x))


def test_path_costs_report_both_candidates_and_the_one_the_layer_runs() -> None:
    from zoo.conv_einsum import conv_einsum_path

    layer = TensorialConv2d(12, 8, 3, padding=1, decomposition="mcp", rate=0.3)
    x = torch.randn(2, 12, 9, 9)
    y = layer(x)
    assert y.shape == (2, 8, 9, 9)
    ((shape, costs),) = layer.path_costs.items()
    assert shape[0] == 2 and shape[-2:] == (9, 9)
    geometry = dict(stride={"h": 1, "w": 1}, padding={"h": 1, "w": 1}, dilation={"h": 1, "w": 1}, padding_mode="zeros")
    shapes = [shape] + [f.shape for f in layer.network.factors]
    _, auto = conv_einsum_path(layer.network.equation, *shapes, optimize="auto", **geometry)
    assert costs["factorized"] == auto.opt_cost
    cheaper = costs["factorized"] < layer.path_ratio * costs["reconstruct"]
    assert costs["chosen"] == ("factorized" if cheaper else "reconstruct")


def test_path_ratio_comes_from_the_decomposition_and_can_be_set_per_layer() -> None:
    mcp = TensorialConv2d(12, 8, 3, padding=1, decomposition="mcp", rate=0.3)
    mtt = TensorialConv2d(12, 8, 3, padding=1, decomposition="mtt", rate=0.3)
    assert (mcp.path_ratio, mtt.path_ratio) == (0.2, 0.5)
    x = torch.randn(2, 12, 9, 9)
    mtt(x)
    mtt.path_ratio = 0.0  # never factorised: the cached choice is dropped and made again
    assert not mtt.path_costs
    y = mtt(x)
    ((_, costs),) = mtt.path_costs.items()
    assert costs["chosen"] == "reconstruct"
    torch.testing.assert_close(y, F.conv2d(x, mtt.weight, mtt.bias, padding=1), rtol=1e-4, atol=1e-5)


def test_factors_saved_under_the_old_keyword_name_still_load() -> None:
    """CP's and SVD's input factor was named ``in`` (a Python keyword torch.export's generated code cannot use);
    a state dict saved with that name loads into the renamed factor ``input`` unchanged."""
    import zoo

    model = zoo.create("lenet5-cp-10pct").eval()
    state = {k.replace("factors.input", "factors.in"): v.clone() for k, v in model.state_dict().items()}
    assert any(k.endswith("factors.in") for k in state)
    fresh = zoo.create("lenet5-cp-10pct").eval()
    fresh.load_state_dict(state)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
