"""``in_chans`` on the ARMA models with weights (issue 19): the trained U-Nets adapt their first convolution as timm
does, and the adapted model saves and loads back; the video models, whose first convolution mixes frame and
hidden-state channels, refuse pretrained adaptation with the core's error.

References: a grayscale image through the ``in_chans=1`` model equals the same image repeated on the three input
channels through the original model (timm sums the RGB filters); ``in_chans=6`` on ``[x, x]`` equals the original on
``x`` (timm repeats the filters and scales by 3/6); ``in_chans=2`` keeps the first two filters scaled by 3/2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import WeightsError
from zoo_arma.family import BUILD_ARGS
from zoo_arma.layer import ARMAConv2d
from zoo_arma.lstm import ConvLSTMNet
from zoo_arma.unet import UNet

NAMES = ["unet-isic-small", "armaunet-isic-small"]
FIRST = "encoder.0.0"


def _pretrained(name: str, **kwargs) -> torch.nn.Module:
    return zoo.create(name, pretrained=True, **kwargs).eval()


def _image(channels: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, channels, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_the_registry_declares_the_first_convolution(name):
    model = _pretrained(name)
    assert zoo.model_info(name).input.first_conv == FIRST == model.pretrained_cfg["first_conv"]
    first = dict(model.named_modules())[FIRST]
    assert first is model.encoder[0][0] and first.in_channels == 3
    assert isinstance(first, ARMAConv2d) == name.startswith("arma")


@pytest.mark.parametrize("name", NAMES)
def test_grayscale_model_sees_a_gray_image_as_the_rgb_model_does(name):
    original, gray = _pretrained(name), _pretrained(name, in_chans=1)
    x = _image(1)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), original(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    assert gray.encoder[0][0].weight.shape[1] == 1 and gray.in_chans == 1


@pytest.mark.parametrize("name", NAMES)
def test_six_channels_on_a_doubled_image_equal_the_rgb_model(name):
    original, six = _pretrained(name), _pretrained(name, in_chans=6)
    x = _image(3, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(six(torch.cat([x, x], dim=1)), original(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_two_channels_keep_the_first_two_filters_and_every_other_tensor(name):
    original, two = _pretrained(name).state_dict(), _pretrained(name, in_chans=2).state_dict()
    assert two.keys() == original.keys()
    key = FIRST + ".weight"
    torch.testing.assert_close(two[key], original[key][:, :2] * 1.5, rtol=0, atol=1e-7)
    for k in original:
        if k != key:  # AR parameters (out-channel shaped), biases, batch-norm statistics: untouched
            assert torch.equal(two[k], original[k]), k


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_chans", [1, 4])
def test_adapted_model_saves_and_loads_back(name, in_chans, tmp_path: Path):
    model = _pretrained(name, in_chans=in_chans)
    folder = zoo.save_pretrained(model, tmp_path / "adapted")
    loaded = zoo.create(f"local-dir:{folder}", pretrained=True).eval()
    x = _image(in_chans, seed=2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.in_chans == in_chans and loaded.pretrained_cfg["input"]["shape"] == [in_chans, 128, 128]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match=rf"expected input \(B, {in_chans}, H, W\)"):
        loaded(_image(3))


def test_video_model_refuses_to_adapt_pretrained_weights(tmp_path: Path):
    """The first gate convolution reads ``[frame, hidden state]`` and the head writes frames: timm's first-conv rule
    does not apply, so the entry declares no ``first_conv`` and the core refuses; from scratch ``in_chans`` works."""
    small = dict(hidden=2, layers=2, skips=[[1, 2]])
    weights = tmp_path / "lstm.safetensors"
    save_file({k: v.contiguous() for k, v in zoo.create("armalstm-mnist", **small).state_dict().items()},
              str(weights))
    assert zoo.model_info("armalstm-mnist").input.first_conv is None
    with pytest.raises(WeightsError, match=r"'armalstm-mnist' declares no first convolution \(input.first_conv\), so "
                                           r"its pretrained weights for 1 input channel\(s\)"):
        zoo.create("armalstm-mnist", checkpoint_path=weights, in_chans=3, **small)
    with pytest.raises(WeightsError, match="declares no first convolution"):  # 10 is the frame count, not channels
        zoo.create("armalstm-mnist", checkpoint_path=weights, in_chans=10, **small)
    rgb = zoo.create("armalstm-mnist", in_chans=3, **small).eval()
    assert rgb.pretrained_cfg["input"]["shape"] == [10, 3, 64, 64]  # (T, C, H, W): the channels change
    clip = torch.rand(1, 3, 3, 8, 8)
    with torch.no_grad():
        out = rgb(clip, future_frames=2)
    assert out.shape == (1, 2, 3, 8, 8)
    folder = zoo.save_pretrained(rgb, tmp_path / "rgb")
    loaded = zoo.create(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded(clip, future_frames=2), out)


def test_every_constructor_argument_may_be_saved():
    """The builders take ``**kwargs``; ``BUILD_ARGS`` must name every argument of the classes they build, or a model
    built with one of them (``layers=2``) could not be saved and loaded back."""
    import inspect

    names = {p for cls in (UNet, ConvLSTMNet) for p in inspect.signature(cls.__init__).parameters if p != "self"}
    assert set(BUILD_ARGS) == names and len(BUILD_ARGS) == len(names)
