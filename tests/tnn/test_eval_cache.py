"""Inference of tensorial layers: the cached dense kernel and the factorised path against independent references
(the kernel rebuilt here with torch.einsum, run by F.conv2d / nn.Conv2d), the choice between them, and when the
cached kernel must be rebuilt or must not be used."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo_tnn.layers import TensorialConv2d, TensorialLinear

D = torch.float64
BUILTIN = ["cp", "tk", "tt", "tr", "svd", "mcp", "mtk", "mtt", "mtr"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _kernel(layer: TensorialConv2d) -> torch.Tensor:
    """The dense kernel, rebuilt here from the factors (not through the layer's code)."""
    factors = [layer.factors[f.name].detach() for f in layer.network.factors]
    w = torch.einsum(layer.network.kernel_equation, *factors)
    return w.reshape(layer.out_channels, layer.in_channels, *layer.kernel_size)


def _reference(layer: TensorialConv2d, x: torch.Tensor) -> torch.Tensor:
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     layer.dilation, bias=layer.bias is not None, padding_mode=layer.padding_mode, dtype=x.dtype)
    with torch.no_grad():
        conv.weight.copy_(_kernel(layer))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
        return conv(x)


def _run(layer: torch.nn.Module, x: torch.Tensor, ratio: float) -> tuple[torch.Tensor, str]:
    """Inference output with ``path_ratio`` forced (inf: always factorised; 0: always the dense kernel)."""
    layer.path_ratio = ratio
    with torch.no_grad():
        y = layer(x)
    ((_, choice),) = [(k, v) for k, v in layer._plans.items() if k[1][0] == "infer"]
    return y, choice.kind


GEOMS = [dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=3, stride=2, padding=1),
         dict(kernel_size=(3, 1), stride=(2, 1), padding=(2, 0), dilation=(2, 1)), dict(kernel_size=1, stride=2),
         dict(kernel_size=3, padding="same", padding_mode="circular"), dict(kernel_size=3, padding=1, padding_mode="reflect"),
         dict(kernel_size=1, padding=1, padding_mode="replicate")]


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
def test_cached_kernel_and_factorised_path_equal_the_dense_reconstruction(name: str, geom: dict) -> None:
    layer = TensorialConv2d(12, 18, decomposition=name, rank=3, dtype=D, **geom).eval()
    x = torch.randn(2, 12, 9, 8, dtype=D)
    ref = _reference(layer, x)
    dense, kind_d = _run(layer, x, 0.0)
    fact, kind_f = _run(layer, x, float("inf"))
    assert (kind_d, kind_f) == ("dense", "factorized")
    torch.testing.assert_close(dense, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fact, ref, rtol=1e-10, atol=1e-10)
    layer.train()
    torch.testing.assert_close(layer(x).detach(), ref, rtol=1e-10, atol=1e-10)  # and the training path


@pytest.mark.parametrize("name", ["cp", "mtt"])
def test_linear_inference_equals_the_dense_reconstruction(name: str) -> None:
    layer = TensorialLinear(24, 30, decomposition=name, rank=3, dtype=D).eval()
    x = torch.randn(4, 5, 24, dtype=D)
    w = torch.einsum(layer.network.kernel_equation, *[p.detach() for p in layer.factor_list()]).reshape(30, 24)
    ref = x @ w.T + layer.bias.detach()
    for ratio, kind in ((0.0, "dense"), (float("inf"), "factorized")):
        y, got = _run(layer, x, ratio)
        assert got == kind
        torch.testing.assert_close(y, ref)


def test_the_cheaper_evaluation_is_chosen_per_input_shape() -> None:
    """The recorded forward costs decide: a low-rank CP layer on a 16x16 map runs factorised; a reshaped layer whose
    rank is far above its channels, on a 4x4 map, runs the cached dense kernel."""
    layer = TensorialConv2d(64, 64, 3, padding=1, decomposition="cp", rank=2).eval()
    with torch.no_grad():
        layer(torch.randn(2, 64, 16, 16))
    ((shape, costs),) = layer.inference_costs.items()
    assert costs["dense"] == 2 * 16 * 16 * 64 * 64 * 9
    want = "factorized" if costs["factorized"] < layer.inference_ratio * costs["dense"] else "dense"
    assert costs["chosen"] == want == "factorized"
    big = TensorialConv2d(16, 16, 3, padding=1, decomposition="mcp", rank=400).eval()
    with torch.no_grad():
        big(torch.randn(1, 16, 4, 4))
    ((_, costs),) = big.inference_costs.items()
    assert costs["chosen"] == "dense" and big._dense_kernel is not None


def _dense_layer(name: str = "mtt") -> TensorialConv2d:
    layer = TensorialConv2d(8, 12, 3, padding=1, decomposition=name, rank=3, dtype=D).eval()
    layer.path_ratio = 0.0  # always the cached kernel in inference
    return layer


def _infer(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return layer(x)


def test_the_kernel_is_built_once_and_reused() -> None:
    layer, x = _dense_layer(), torch.randn(2, 8, 6, 6, dtype=D)
    _infer(layer, x)
    first = layer._dense_kernel[1]
    _infer(layer, x)
    _infer(layer, torch.randn(3, 8, 5, 7, dtype=D))  # another shape: the same kernel
    assert layer._dense_kernel[1] is first


def test_cache_invalidated_by_an_optimizer_step() -> None:
    layer, x = _dense_layer(), torch.randn(2, 8, 6, 6, dtype=D)
    _infer(layer, x)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(x).square().sum().backward()  # eval mode with grad enabled: the factorised/rebuild path, no cache
    opt.step()
    torch.testing.assert_close(_infer(layer, x), _reference(layer, x))
    # and after a round in training mode
    layer.train()
    opt.zero_grad()
    layer(x).square().sum().backward()
    opt.step()
    layer.eval()
    torch.testing.assert_close(_infer(layer, x), _reference(layer, x))


def test_cache_invalidated_by_load_state_dict() -> None:
    layer, x = _dense_layer(), torch.randn(2, 8, 6, 6, dtype=D)
    other = TensorialConv2d(8, 12, 3, padding=1, decomposition="mtt", rank=3, dtype=D)
    before = _infer(layer, x)
    layer.load_state_dict(other.state_dict())
    after = _infer(layer, x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _reference(other.eval(), x))


def test_cache_invalidated_by_to_dtype() -> None:
    layer, x = _dense_layer(), torch.randn(2, 8, 6, 6, dtype=D)
    _infer(layer, x)
    layer.float()
    y = _infer(layer, x.float())
    assert y.dtype == torch.float32 and layer._dense_kernel[1].dtype == torch.float32
    torch.testing.assert_close(y, _reference(layer, x.float()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("edit", ["mul_", "data", "reset_parameters", "copy_"])
def test_cache_invalidated_by_in_place_parameter_edits(edit: str) -> None:
    layer, x = _dense_layer(), torch.randn(2, 8, 6, 6, dtype=D)
    before = _infer(layer, x)
    p = next(iter(layer.factors.values()))
    with torch.no_grad():
        if edit == "mul_":
            p.mul_(3.0)
        elif edit == "data":
            p.data = torch.randn_like(p)
        elif edit == "copy_":
            p.copy_(torch.randn_like(p))
        else:
            layer.reset_parameters()
    after = _infer(layer, x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _reference(layer, x))


def test_no_cache_in_training_mode_or_with_grad_enabled() -> None:
    layer, x = _dense_layer(), torch.randn(2, 8, 6, 6, dtype=D)
    layer.train()
    _infer(layer, x)  # no_grad but training mode
    assert layer._dense_kernel is None and all(k[1][0] == "train" for k in layer._plans)
    layer.eval()
    y = layer(x)  # eval mode, grad enabled, factors require grad: gradients must reach the factors
    assert layer._dense_kernel is None and y.requires_grad
    grads = torch.autograd.grad(y.sum(), layer.factor_list())
    assert all(g.abs().sum() > 0 for g in grads)
    _infer(layer, x)
    assert layer._dense_kernel is not None
    layer.train()  # train() drops the kernel
    assert layer._dense_kernel is None


def test_frozen_factors_infer_with_grad_enabled_and_inference_mode_kernels_are_reusable() -> None:
    layer, x = _dense_layer(), torch.randn(2, 8, 6, 6, dtype=D)
    with torch.inference_mode():
        y0 = layer(x)
    assert not layer._dense_kernel[1].is_inference()
    layer.requires_grad_(False)
    xg = x.clone().requires_grad_()
    y = layer(xg)  # the cached kernel (built under inference_mode) can be saved for backward
    (gx,) = torch.autograd.grad(y.sum(), xg)
    torch.testing.assert_close(y.detach(), y0)
    (want,) = torch.autograd.grad(F.conv2d(xg, _kernel(layer), layer.bias, padding=1).sum(), xg)
    torch.testing.assert_close(gx, want)


def test_copies_and_pickles_carry_no_cache_and_still_work() -> None:
    layer, x = _dense_layer(), torch.randn(2, 8, 6, 6, dtype=D)
    y = _infer(layer, x)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert other._dense_kernel is None and not other._plans
        torch.testing.assert_close(_infer(other, x), y)
