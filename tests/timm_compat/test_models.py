"""The properties timm's own ``tests/test_models.py`` checks, on zoo models (issue 20, item 1).

Our own code, written after reading what timm's suite asserts: forward / backward, the default-cfg contract
(``pretrained_cfg`` / ``default_cfg``, ``num_classes``, ``num_features``, ``reset_classifier``,
``forward_features`` / ``forward_head``), ``features_only`` with ``feature_info``, ``forward_intermediates``, FX
(torchvision's ``create_feature_extractor``, forward and backward), ``torch.export`` and channels-last memory.
One model per kind, at small input sizes: timm backbones with tensorial layers (reshaped TT, CP), a CIFAR ResNet-32
with tensorial layers, an SC-Fac Lipschitz WRN, a BQN CNN, LeNet-5, and LeNet-5 with each other decomposition of
``zoo_tnn.list_decompositions()`` (cp, tk, tt, tr, svd, mcp, mtk, mtr), so that every one is checked once.

What does not pass yet is marked ``xfail(strict=True)`` with the reason and issue 20, so a fix shows up as an
XPASS to remove the mark. TorchScript is not tested: torch deprecates ``torch.jit.script`` / ``trace`` in favour
of ``torch.export`` (checked here).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import pytest
import torch
from torch import nn

import zoo


@dataclass(frozen=True)
class Case:
    """A model under test and the input size it is checked at (C, H, W)."""

    name: str
    input_size: Tuple[int, int, int]


CASES = [
    Case("resnet18-mtt-10pct", (3, 64, 64)),            # timm backbone, reshaped TT layers
    Case("resnet18-cp-10pct", (3, 32, 32)),             # timm backbone, CP layers
    Case("resnet32-mtt-10pct", (3, 32, 32)),            # the zoo's CIFAR ResNet-32, reshaped TT layers
    Case("sc-fac-wrn10-1-cifar10-small", (3, 32, 32)),  # SC-Fac orthogonal convolutions
    Case("bqn-cnn-mnist", (1, 28, 28)),                 # Bayesian quantized CNN
    Case("lenet5", (1, 28, 28)),                        # the zoo's LeNet-5
    # every other tensorial decomposition (zoo_tnn.list_decompositions()) on LeNet-5, the smallest backbone
    *[Case(f"lenet5-{d}-10pct", (1, 28, 28)) for d in ("cp", "tk", "tt", "tr", "svd", "mcp", "mtk", "mtr")],
]

KNOWN_FAILURES: Dict[str, Dict[str, str]] = {}
"""check -> model -> why it fails today."""


def cases(check: str) -> List[object]:
    """``CASES`` as pytest params, the known failures of ``check`` marked strict xfail."""
    known = KNOWN_FAILURES.get(check, {})
    return [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(reason=known[c.name], strict=True)]
                         if c.name in known else []) for c in CASES]


_MODELS: Dict[str, nn.Module] = {}


def model_of(case: Case) -> nn.Module:
    """A fresh copy (eval mode, fixed seed) of the case's model; built once per session."""
    if case.name not in _MODELS:
        torch.manual_seed(0)
        _MODELS[case.name] = zoo.create(case.name).eval()
    return copy.deepcopy(_MODELS[case.name])


def batch(case: Case, n: int = 2) -> torch.Tensor:
    return torch.randn(n, *case.input_size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("case", cases("forward_backward"))
def test_forward_backward(case: Case) -> None:
    """Logits of shape (B, num_classes), finite; every trainable parameter receives a finite gradient."""
    model = model_of(case).train()
    out = model(batch(case))
    assert out.shape == (2, model.num_classes) and torch.isfinite(out).all()
    out.float().mean().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trainable == with_grad, f"no gradient for {sorted(trainable - with_grad)[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("case", cases("default_cfg"))
def test_default_cfg(case: Case) -> None:
    """pretrained_cfg is timm's contract: default_cfg is the same object, the classes / first conv / classifier
    it names exist, timm's data config resolves from it, and it never points at weights of another model."""
    from timm.data import resolve_model_data_config

    model = model_of(case)
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg["architecture"] == case.name and cfg["num_classes"] == model.num_classes
    modules = dict(model.named_modules())
    assert cfg["classifier"] in modules and modules[cfg["classifier"]] is model.get_classifier()
    assert not {"url", "hf_hub_id", "file", "hf_hub_filename"} & {k for k, v in cfg.items() if v}
    data = resolve_model_data_config(model)
    assert tuple(data["input_size"]) == tuple(cfg["input_size"])
    if cfg.get("mean") is not None:
        assert tuple(data["mean"]) == tuple(cfg["mean"])


@pytest.mark.parametrize("case", cases("first_conv"))
def test_first_conv(case: Case) -> None:
    """pretrained_cfg['first_conv'] names the first convolution, whose weight has in_chans input channels (what
    timm adapts for another in_chans)."""
    model = model_of(case)
    name = model.pretrained_cfg["first_conv"]
    assert isinstance(name, str), "pretrained_cfg['first_conv'] is not set"
    weight = model.state_dict()[name + ".weight"]
    assert weight.shape[1] == case.input_size[0]


@pytest.mark.parametrize("case", cases("pooled_classifier"))
def test_reset_classifier_pooled(case: Case) -> None:
    """reset_classifier(0): pooled pre-logits of width head_hidden_size (num_features where there is no hidden
    layer), as timm asserts; reset_classifier(n): n logits."""
    model = model_of(case)
    x = batch(case)
    model.reset_classifier(0)
    assert model(x).shape == (2, getattr(model, "head_hidden_size", model.num_features))
    model.reset_classifier(7)
    assert model.num_classes == 7 and model(x).shape == (2, 7)


@pytest.mark.parametrize("case", cases("unpooled_classifier"))
def test_reset_classifier_unpooled(case: Case) -> None:
    """reset_classifier(0, global_pool=''): the unpooled feature map, num_features channels."""
    model = model_of(case)
    model.reset_classifier(0, "")
    out = model(batch(case))
    assert out.ndim == 4 and out.shape[1] == model.num_features


@pytest.mark.parametrize("case", cases("forward_features"))
def test_forward_features(case: Case) -> None:
    """forward_features ends in num_features channels (or features)."""
    model = model_of(case)
    feats = model.forward_features(batch(case))
    assert feats.shape[1] == model.num_features


@pytest.mark.parametrize("case", cases("forward_head"))
def test_forward_head(case: Case) -> None:
    """forward == forward_head(forward_features); pre_logits gives head_hidden_size (or num_features)."""
    model = model_of(case)
    x = batch(case)
    feats = model.forward_features(x)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    hidden = getattr(model, "head_hidden_size", model.num_features)
    assert model.forward_head(feats, pre_logits=True).shape == (2, hidden)


@pytest.mark.parametrize("case", cases("features_only"))
def test_features_only(case: Case) -> None:
    """zoo.create(features_only=True): one map per feature_info entry, its channels; each map no larger than the
    input over its reduction (timm's check: a valid convolution makes it smaller), the reductions non-decreasing."""
    torch.manual_seed(0)
    model = zoo.create(case.name, features_only=True).eval()
    x = batch(case)
    maps = model(x)
    info = model.feature_info
    assert [m.shape[1] for m in maps] == info.channels()
    for m, r in zip(maps, info.reduction()):
        assert m.shape[-2] <= math.ceil(x.shape[-2] / r) and m.shape[-1] <= math.ceil(x.shape[-1] / r)
    assert info.reduction() == sorted(info.reduction())
    subset = zoo.create(case.name, features_only=True, out_indices=(1, 2))
    assert [m.shape[1] for m in subset(x)] == info.channels()[1:3]


@pytest.mark.parametrize("case", cases("forward_intermediates"))
def test_forward_intermediates(case: Case) -> None:
    """forward_intermediates: the final features equal forward_features, one map per feature_info entry."""
    model = model_of(case)
    x = batch(case)
    final, maps = model.forward_intermediates(x)
    torch.testing.assert_close(final, model.forward_features(x))
    assert [m.shape[1] for m in maps] == [i["num_chs"] for i in model.feature_info]


@pytest.mark.parametrize("case", cases("fx"))
def test_fx_forward_backward(case: Case) -> None:
    """timm's FX feature extractor (torchvision's create_feature_extractor with timm's leaf modules) traces the
    model; the traced output equals forward and backpropagates."""
    from timm.models import create_feature_extractor, get_graph_node_names

    model = model_of(case)
    _, eval_nodes = get_graph_node_names(model)
    traced = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    x = batch(case)
    out = next(iter(traced(x).values()))
    torch.testing.assert_close(out, model(x))
    traced.train()
    next(iter(traced(x).values())).mean().backward()
    assert any(p.grad is not None for p in traced.parameters())


@pytest.mark.parametrize("case", cases("export"))
def test_torch_export(case: Case) -> None:
    """torch.export.export succeeds and the exported program computes the same logits."""
    model = model_of(case)
    x = batch(case)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("case", cases("channels_last"))
def test_channels_last(case: Case) -> None:
    """model.to(memory_format=torch.channels_last) works and computes the same logits on channels-last input."""
    model = model_of(case)
    x = batch(case)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), expected,
                               rtol=1e-4, atol=1e-4)


def test_every_decomposition_has_a_case() -> None:
    """Each decomposition zoo_tnn offers is checked by at least one case (a new decomposition needs one here)."""
    import zoo_tnn

    checked = {zoo.model_info(c.name).args.get("decomposition") for c in CASES}
    assert set(zoo_tnn.list_decompositions()) <= checked
