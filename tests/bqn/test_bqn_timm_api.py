"""BQN models under timm's API: in_chans adaptation of the pretrained models (issue 19), the fixed input mix that is
their first_conv, the rank-4 convolution logits (channels-last) and their earlier layout, and the errors of the
feature API outside analytic inference (issue 20, item 1). The timm properties themselves are checked on
bqn-cnn-mnist by tests/timm_compat/test_models.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo_bqn.layers import BayesConv2d, ChannelMix
from zoo_bqn.models import bqn_cnn

PRETRAINED = ["bqn-cnn-mnist", "bqn-mlp-mnist"]


def _grey(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", PRETRAINED)
def test_in_chans_adapts_pretrained_weights_to_the_channel_mean(name):
    """timm's rule for a grey-trained first convolution: an image of any in_chans is read as its channel mean, so a
    replicated grey image gives the grey image's output (all modes), and a colour image that of its mean."""
    grey_model = zoo.create(name, pretrained=True).eval()
    rgb_model = zoo.create(name, pretrained=True, in_chans=3).eval()
    assert rgb_model.pretrained_cfg["first_conv"] == "stem"
    assert rgb_model.state_dict()["stem.weight"].shape == (1, 3, 1, 1)
    x = _grey()
    colour = torch.rand(6, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for mode in ("ai", "ai-norm"):
            torch.testing.assert_close(rgb_model(x.repeat(1, 3, 1, 1), mode=mode), grey_model(x, mode=mode),
                                       rtol=0, atol=1e-5)
            torch.testing.assert_close(rgb_model(colour, mode=mode), grey_model(colour.mean(1, keepdim=True),
                                                                                 mode=mode), rtol=0, atol=1e-5)
        same = rgb_model(x.repeat(1, 3, 1, 1), mode="map").argmax(1) == grey_model(x, mode="map").argmax(1)
        assert same.all()


@pytest.mark.parametrize("name", PRETRAINED)
def test_adapted_model_saves_and_loads_back(name, tmp_path):
    model = zoo.create(name, pretrained=True, in_chans=3).eval()
    zoo.save_pretrained(model, tmp_path / "m")
    back = zoo.create(f"local-dir:{tmp_path / 'm'}", pretrained=True).eval()
    assert back.stem.in_chans == 3 and back.pretrained_cfg["input_size"] == (3, 28, 28)
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
        assert torch.equal(back(x, mode="map"), model(x, mode="map"))


@pytest.mark.parametrize("in_chans,out_chans,expected", [
    (1, 1, [[1.0]]),
    (3, 1, [[1 / 3, 1 / 3, 1 / 3]]),                   # channel mean
    (1, 3, [[1.0], [1.0], [1.0]]),                    # grey repeated
    (4, 3, [[0.5, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0]]),
])
def test_channel_mix_weights_and_output(in_chans, out_chans, expected):
    mix = ChannelMix(in_chans, out_chans)
    weight = torch.tensor(expected)
    torch.testing.assert_close(mix.weight.flatten(1), weight)
    x = torch.randn(2, in_chans, 5, 4)
    torch.testing.assert_close(mix(x), torch.einsum("oc,bchw->bohw", weight, x))
    assert mix.is_identity() == (in_chans == out_chans) and not list(mix.parameters())
    with pytest.raises(ValueError, match=rf"expected \(B, {in_chans}, H, W\) images, got shape \(2, 7\)"):
        mix(torch.randn(2, 7))


def test_conv_logits_are_rank_4_and_the_earlier_layout_loads():
    """(O, C, k * k, D) storage; a state dict of (O, C, k, k, D) logits gives the same categorical per weight."""
    layer = BayesConv2d(2, 3, 3)
    assert layer.logits.shape == (3, 2, 9, 2) and layer.probs().shape == (3, 2, 3, 3, 2)
    old = torch.randn(3, 2, 3, 3, 2)
    layer.load_state_dict({"logits": old})
    torch.testing.assert_close(layer.probs(), torch.softmax(old, -1))
    assert torch.equal(layer.map_indices(), old.argmax(-1))


def test_channels_last_model_keeps_its_outputs():
    torch.manual_seed(0)
    model = bqn_cnn(num_classes=4, img_size=8, channels=(3, 4), kernel_size=3, residual=True).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        expected = {mode: model(x, mode=mode) for mode in ("ai", "map")}
        model = model.to(memory_format=torch.channels_last)
        assert model.features[0].logits.is_contiguous(memory_format=torch.channels_last)
        for mode, out in expected.items():
            torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last), mode=mode), out)


def test_unflattened_moment_map_in_every_mode():
    """global_pool='': the trunk's units as (B, 2C, H, W) means then variances; map: the QNN's values and variance
    0; mc: the mean and variance of S sampled QNNs, which approach the analytic moments' means."""
    torch.manual_seed(0)
    model = bqn_cnn(num_classes=3, img_size=8, channels=(2,), kernel_size=3).eval()
    model.reset_classifier(0, "")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        analytic = model(x)
        assert analytic.shape == (3, model.num_features, 4, 4) and torch.equal(analytic, model.forward_features(x))
        qnn = model(x, mode="map")
        assert (qnn[:, 2:] == 0).all() and set(qnn[:, :2].unique().tolist()) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
        mc = model(x, mode="mc", samples=4000, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(mc[:, :2], analytic[:, :2], rtol=0, atol=0.06)
    with pytest.raises(ValueError, match="global_pool='' leaves the trunk's units unflattened"):
        model.reset_classifier(5)
    with pytest.raises(ValueError, match="global_pool must be one of"):
        model.reset_classifier(0, "avg")


def test_feature_api_reads_analytic_inference_only():
    model = zoo.create("bqn-cnn-mnist").set_mode("map")
    with pytest.raises(ValueError, match=r"forward_features reads analytic inference .* mode is 'map'"):
        model.forward_features(_grey(2))
    mlp = zoo.create("bqn-mlp-mnist")
    with pytest.raises(ValueError, match="has no feature maps"):
        mlp.forward_intermediates(_grey(2))


def test_fx_graph_refuses_arguments_it_was_not_traced_for():
    from timm.models import create_feature_extractor, get_graph_node_names

    model = zoo.create("bqn-cnn-mnist").eval()
    _, nodes = get_graph_node_names(model)
    traced = create_feature_extractor(model, return_nodes=[nodes[-1]])
    x = _grey(2)
    torch.testing.assert_close(next(iter(traced(x).values())), model(x))
    with pytest.raises(ValueError, match="computes its default mode only"):
        traced(x, mode="map")


def test_first_conv_is_an_identity_on_the_registry_models():
    """stem.weight is what the zoo adapts; unadapted it passes the image through unchanged (bit for bit)."""
    model = zoo.create("bqn-cnn-mnist", pretrained=True).eval()
    assert model.pretrained_cfg["first_conv"] == "stem" and model.stem.is_identity()
    x = _grey(2)
    assert torch.equal(model.stem(x), F.conv2d(x, torch.ones(1, 1, 1, 1)))
    assert torch.equal(model.stem(x), x)


def test_adapted_model_exports_its_input_mix():
    """The exported MAP QNN of an in_chans=3 model keeps the channel mean (3 float32 weights in its size) and
    reproduces the model bit for bit; an identity mix is dropped from the export."""
    from zoo_bqn.quantized import PackedWeight

    model = zoo.create("bqn-cnn-mnist", pretrained=True, in_chans=3).eval()
    qnn = model.export("map")
    packed = sum(m.nbytes() for m in qnn.modules() if isinstance(m, PackedWeight))
    assert qnn.size_bytes() == packed + 4 + 3 * 4
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(qnn(x), model(x, mode="map"))
    grey = zoo.create("bqn-cnn-mnist", pretrained=True).export("map")
    assert not any(isinstance(m, ChannelMix) for m in grey.modules()) and grey.size_bytes() == packed + 4


def test_a_state_dict_of_the_earlier_layout_loads(tmp_path):
    """Weights written before the input mix and the rank-4 conv logits (no stem.weight, (O, C, k, k, D) logits)
    load into a grey model, with the same outputs; as a checkpoint file too."""
    from safetensors.torch import save_file

    model = zoo.create("bqn-cnn-mnist", pretrained=True).eval()
    old = {k: v for k, v in model.state_dict().items() if k != "stem.weight"}
    for key in ("features.0.logits", "features.3.logits"):
        o, c, k2, d = old[key].shape
        old[key] = old[key].reshape(o, c, 5, 5, d)
    fresh = zoo.create("bqn-cnn-mnist").eval()
    fresh.load_state_dict(old)
    save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "old.safetensors"))
    from_file = zoo.create("bqn-cnn-mnist", checkpoint_path=tmp_path / "old.safetensors").eval()
    x = _grey(3)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x)) and torch.equal(from_file(x), model(x))
