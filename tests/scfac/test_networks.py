"""Lipschitz networks: 1-Lipschitz by construction (Jacobian power iteration, random pairs), timm plumbing, registry."""

from __future__ import annotations

import pytest
import torch
import yaml

from zoo.registry.schema import ModelEntry
from zoo_scfac.lipschitz import ChannelShuffle, ConvexMerge, GroupSort, LipschitzAvgPool2d
from zoo_scfac.networks import LipschitzKWLarge, LipschitzResNet9, LipschitzWideResNet
from zoo_scfac.robust import jacobian_spectral_norm
from zoo_scfac.spectral import dense_singular_values

TINY_WRN = dict(depth=10, widen_factor=1, kernel_size=3, base_channels=(4, 8, 8), img_size=16, pool_window=2)


def _tiny_models():
    torch.manual_seed(0)
    return {
        "wrn-add-pool": LipschitzWideResNet(**TINY_WRN),
        "wrn16-concat": LipschitzWideResNet(**{**TINY_WRN, "depth": 16, "skip": "concat", "init": "uniform"}),
        "wrn-none-slim": LipschitzWideResNet(**{**TINY_WRN, "skip": "none", "downsample": "stride-slim"}),
        "wrn-add-wide-dil": LipschitzWideResNet(**{**TINY_WRN, "downsample": "stride-wide", "dilation": 2, "init": "torus"}),
        "resnet9": LipschitzResNet9(width=0.0625, img_size=32),
        "kwlarge": LipschitzKWLarge(width=0.125, img_size=16),
    }


def _perturb(model: torch.nn.Module) -> None:
    """Move every parameter away from its (delta-kernel) initialisation."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))


@pytest.fixture(scope="module")
def models():
    nets = _tiny_models()
    for m in nets.values():
        _perturb(m)
        m.eval()
    return nets


def _input(name: str, n: int = 1) -> torch.Tensor:
    side = 32 if name == "resnet9" else 16
    return torch.rand(n, 3, side, side)


@pytest.mark.parametrize("name", ["wrn-add-pool", "wrn16-concat", "wrn-none-slim", "wrn-add-wide-dil", "resnet9", "kwlarge"])
def test_network_is_one_lipschitz(models, name):
    model = models[name]
    torch.manual_seed(1)
    x = _input(name)
    assert model(x).shape == (1, 10)
    sigma = jacobian_spectral_norm(model, x, iters=30)
    assert 0.0 < sigma <= 1.0 + 1e-4
    a, b = _input(name, 8), _input(name, 8)
    with torch.no_grad():
        ratio = (model(a) - model(b)).norm(dim=1) / (a - b).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= 1.0 + 1e-5


def test_jacobian_power_iteration_matches_svd_on_a_linear_map():
    torch.manual_seed(0)
    w = torch.randn(5, 12)
    f = lambda x: x.flatten(1) @ w.T
    est = jacobian_spectral_norm(f, torch.randn(1, 3, 2, 2), iters=200)
    assert abs(est - float(torch.linalg.svdvals(w)[0])) < 1e-4


def test_groupsort_is_norm_preserving_and_one_lipschitz():
    x, y = torch.randn(4, 6, 3, 3), torch.randn(4, 6, 3, 3)
    gs = GroupSort()
    assert torch.allclose(gs(x).norm(), x.norm())
    assert float((gs(x) - gs(y)).norm()) <= float((x - y).norm()) + 1e-6
    assert torch.equal(gs(torch.tensor([[3.0, 5.0, -1.0, -2.0]])), torch.tensor([[5.0, 3.0, -1.0, -2.0]]))
    with pytest.raises(ValueError, match="even number of channels"):
        gs(torch.randn(1, 3))


def test_scaled_average_pool_has_lipschitz_constant_exactly_one():
    sv = dense_singular_values(LipschitzAvgPool2d(4), (2, 8, 8))
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-12)  # a co-isometry: every window -> unit vector
    sv3 = dense_singular_values(LipschitzAvgPool2d(3), (1, 7, 7))  # ragged border is cropped
    assert float(sv3.max()) == pytest.approx(1.0, abs=1e-12)


def test_shuffle_is_a_permutation_and_merge_is_convex():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    merge = ConvexMerge(0.25)
    a, b = torch.randn(3), torch.randn(3)
    assert torch.allclose(merge(a, b), 0.25 * a + 0.75 * b)


def test_timm_classifier_plumbing():
    """WRN: forward_features is the last (B, 8, 4, 4) map (num_features 8); the head pools it (window 2, scaled) to
    the 8 * 2 * 2 pre-logits (head_hidden_size); global_pool='' returns the map; the logits are the composition."""
    torch.manual_seed(0)
    model = LipschitzWideResNet(**TINY_WRN)
    x = torch.rand(2, 3, 16, 16)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 4, 4) and model.num_features == 8
    head = model.get_classifier()
    assert head.out_features == 10 and head.in_features == model.head_hidden_size == 8 * 2 * 2
    pooled = 2 * torch.nn.functional.avg_pool2d(feats, 2).flatten(1)  # the scaled pooling, written out
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), pooled)
    torch.testing.assert_close(model(x), head(pooled))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.head_hidden_size)
    model.reset_classifier(0, "")
    torch.testing.assert_close(model(x), feats)
    with pytest.raises(ValueError, match="map unpooled, which a classifier of 3 classes cannot read"):
        model.reset_classifier(3, "")
    with pytest.raises(ValueError, match="global_pool 'avg' .* or '' \\(none\\), got 'max'"):
        model.reset_classifier(3, "max")
    model.reset_classifier(4, "avg")
    assert model.global_pool == "avg" and model(x).shape == (2, 4)
    for flat in (LipschitzResNet9(width=0.0625, img_size=32), LipschitzKWLarge(width=0.125, img_size=16)):
        assert flat.head_hidden_size == flat.num_features  # already pooled and flat: no unpooled map
        with pytest.raises(ValueError, match="already pooled and flat"):
            flat.reset_classifier(0, "")
    gray = LipschitzWideResNet(**{**TINY_WRN, "in_chans": 1, "num_classes": 4})
    assert gray(torch.rand(2, 1, 16, 16)).shape == (2, 4)


def test_full_network_state_dict_loads_into_a_fresh_build():
    torch.manual_seed(0)
    a = LipschitzWideResNet(**TINY_WRN)
    _perturb(a)
    torch.manual_seed(5)
    b = LipschitzWideResNet(**TINY_WRN)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 16, 16)
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("kwargs,match", [(dict(depth=12), "6n \\+ 4"), (dict(downsample="max"), "downsample"),
                                          (dict(skip="mul"), "skip"), (dict(img_size=18), "divisible by 4")])
def test_invalid_network_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LipschitzWideResNet(**{**TINY_WRN, **kwargs})


def test_registry_entries_validate():
    from importlib.resources import files

    data = yaml.safe_load(files("zoo_scfac").joinpath("registry.yaml").read_text())
    names = set(data["models"])
    assert {"sc-fac-wrn22", "sc-fac-wrn10", "sc-fac-wrn34", "sc-fac-resnet9", "sc-fac-kwlarge"} <= names
    for name, fields in data["models"].items():
        entry = ModelEntry(name=name, **fields)
        assert entry.family == "sc-fac"
    wrn22 = data["models"]["sc-fac-wrn22"]
    assert wrn22["args"]["depth"] == 22 and wrn22["args"]["widen_factor"] == 10 and wrn22["args"]["kernel_size"] == 5
    assert wrn22["reference"]["metrics"] == {"clean_acc": 87.82, "pgd_acc": 76.46}
