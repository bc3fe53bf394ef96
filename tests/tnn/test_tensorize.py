"""tensorize() on timm CNNs and the plugin's CIFAR/MNIST backbones."""

from __future__ import annotations

import copy
from typing import Dict

import pytest
import torch
from torch import nn

from zoo_tnn.backbones import build_backbone
from zoo_tnn.layers import TensorialConv2d, TensorialLinear, _Tensorial
from zoo_tnn.rank import InfeasibleRate
from zoo_tnn.tensorize import compression_report, tensorize

CASES = [
    # backbone, decomposition, input (B, C, H, W), classes
    ("resnet18", "mcp", (2, 3, 32, 32), 1000),
    ("wide_resnet50_2", "tt", (2, 3, 32, 32), 1000),
    ("resnext26ts", "mtt", (2, 3, 32, 32), 1000),
    ("vgg11", "tk", (2, 3, 32, 32), 1000),
    ("convnext_atto", "mtr", (2, 3, 32, 32), 1000),
    ("resnet32", "mcp", (2, 3, 32, 32), 10),
    ("wrn28_10", "mtt", (2, 3, 32, 32), 100),
    ("lenet5", "svd", (2, 1, 28, 28), 10),
    ("vgg16_cifar", "mtt", (2, 3, 32, 32), 10),  # Table 2.9's three backbones
    ("resnet34_cifar", "mtt", (2, 3, 32, 32), 10),
    ("wrn28_10_cifar10", "cp", (2, 3, 32, 32), 10),
]


def _output_shapes(model: nn.Module, x: torch.Tensor, names: list[str]) -> Dict[str, tuple]:
    shapes: Dict[str, tuple] = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(out.shape))) for n in names]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize("backbone,decomposition,shape,classes", CASES)
def test_tensorize_backbone_shapes_and_backward(backbone: str, decomposition: str, shape: tuple, classes: int) -> None:
    torch.manual_seed(0)
    model = build_backbone(backbone)
    dense = copy.deepcopy(model)
    tensorize(model, decomposition, 0.05)
    rep = compression_report(model)
    tensorized = [r["name"] for r in rep["layers"] if r["status"] in ("tensorized", "rank1")]
    assert tensorized, "nothing was tensorized"
    for name in tensorized:
        assert isinstance(model.get_submodule(name), _Tensorial)
    statuses = {r["name"]: r["status"] for r in rep["layers"]}
    assert "dense:first" in statuses.values() and "dense:classifier" in statuses.values()
    assert isinstance(model.get_classifier(), nn.Linear)
    assert rep["params"] == sum(p.numel() for p in model.parameters())
    assert rep["dense_params"] == sum(p.numel() for p in dense.parameters())
    if not any(s == "rank1" for s in statuses.values()):
        assert rep["layer_rate"] <= 0.05
    x = torch.randn(*shape)
    # every tensorial layer produces the dense layer's output shape
    assert _output_shapes(model, x, tensorized) == _output_shapes(dense, x, tensorized)
    model.train()
    y = model(x)
    assert y.shape == (shape[0], classes)
    y.float().pow(2).mean().backward()
    for name in tensorized:
        for p in model.get_submodule(name).parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()


def test_grouped_convolutions_stay_dense_and_are_reported() -> None:
    model = tensorize(build_backbone("convnext_atto"), "mcp", 0.1)
    rep = compression_report(model)
    grouped = [r for r in rep["layers"] if r["status"].startswith("dense:grouped")]
    assert grouped and all(isinstance(model.get_submodule(r["name"]), nn.Conv2d) for r in grouped)
    assert isinstance(model.stages[0].blocks[0].mlp.fc1, TensorialConv2d)
    # with conv_mlp=False convnext's pointwise MLPs are nn.Linear on NHWC maps: TensorialLinear
    model = tensorize(build_backbone("convnext_atto", conv_mlp=False), "mcp", 0.1)
    fc1 = model.stages[0].blocks[0].mlp.fc1
    assert isinstance(fc1, TensorialLinear)
    x = torch.randn(1, 3, 32, 32)
    assert model(x).shape == (1, 1000)


def test_options_first_classifier_exclude_linear() -> None:
    model = tensorize(build_backbone("lenet5"), "mtt", 0.5, skip_first=False, skip_classifier=False)
    assert isinstance(model.conv1, TensorialConv2d) and isinstance(model.fc3, TensorialLinear)
    model = tensorize(build_backbone("lenet5"), "mtt", 0.2, exclude=["fc*"])
    assert isinstance(model.conv2, TensorialConv2d) and isinstance(model.fc1, nn.Linear)
    model = tensorize(build_backbone("lenet5"), "mtt", 0.2, linear=False)
    assert isinstance(model.fc1, nn.Linear) and isinstance(model.conv2, TensorialConv2d)


def test_infeasible_rates() -> None:
    # conv2 of LeNet-5 (16x6x5x5 = 2400 weights): TR at 0.5 % cannot fit even rank 1
    with pytest.raises(InfeasibleRate, match="cannot reach rate"):
        tensorize(build_backbone("lenet5"), "tr", 0.005, on_infeasible="raise")
    model = tensorize(build_backbone("lenet5"), "tr", 0.005, on_infeasible="dense")
    assert isinstance(model.conv2, nn.Conv2d)
    model = tensorize(build_backbone("lenet5"), "tr", 0.005)
    rec = {r.name: r for r in model.tnn_layers}
    assert rec["conv2"].status == "rank1" and model.conv2.rank == 1
    with pytest.raises(ValueError, match="rate must be in"):
        tensorize(build_backbone("lenet5"), "tr", 5.0)


def test_tensorize_with_layer_decomp_init_keeps_a_full_rank_model_exact() -> None:
    torch.manual_seed(0)
    dense = build_backbone("lenet5").double().eval()
    model = tensorize(copy.deepcopy(dense), "tk", rank=400, init="decomp", fit_kwargs={"sweeps": 0})
    assert all(r.fit_error is not None and r.fit_error < 1e-10 for r in model.tnn_layers if r.status == "tensorized")
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(model(x), dense(x))


@pytest.mark.parametrize("backbone,params", [("vgg16_cifar", 14.7e6), ("resnet34_cifar", 21.3e6),
                                             ("wrn28_10_cifar10", 36.5e6)])
def test_table_2_9_backbones_have_the_published_sizes(backbone: str, params: float) -> None:
    """VGG-16 (14.7 M), ResNet-34 (21.3 M) and WRN-28-10 (36.5 M) as trained on CIFAR-10 in Table 2.9."""
    model = build_backbone(backbone)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, rel=0.002)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
