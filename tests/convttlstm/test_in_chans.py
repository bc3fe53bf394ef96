"""in_chans for the grayscale video predictors (issue 19): the first layer reads the frame beside the hidden
state and the head writes frames, so the network adapts its pretrained weights itself
(``VideoPredictionNet.adapt_pretrained_in_chans``, the core's hook). A gray video given as C equal channels is
predicted as the original predicts it, in every channel; the adapted model saves and loads back; weights it cannot
adapt are refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import PluginError, WeightsError
from zoo_convttlstm.network import VideoPredictionNet

MODELS = ["convlstm-mnist-small", "convttlstm-mnist-small"]


def _clip(channels: int = 1) -> torch.Tensor:
    return torch.rand(2, 6, channels, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels", [2, 3])
def test_a_gray_video_in_equal_channels_is_predicted_as_the_original_in_every_channel(name: str, channels: int):
    gray = zoo.create(name, pretrained=True).eval()
    adapted = zoo.create(name, pretrained=True, in_chans=channels).eval()
    x = _clip()
    with torch.no_grad():
        expected = gray(x, future_frames=4)
        got = adapted(x.repeat(1, 1, channels, 1, 1), future_frames=4)
    assert got.shape == (2, 4, channels, 32, 32)
    torch.testing.assert_close(got, expected.repeat(1, 1, channels, 1, 1), rtol=0, atol=2e-5)
    assert adapted.pretrained_cfg["input_size"][1] == channels  # (T, C, H, W): C changed, not T
    assert adapted.pretrained_cfg["input_size"][0] == gray.pretrained_cfg["input_size"][0]


@pytest.mark.parametrize("name", MODELS)
def test_a_colour_video_is_read_as_its_gray_mean_and_predicted_in_every_channel(name: str):
    """The adapted model sees only the mean of the input channels (permuting them changes nothing) and writes
    the same prediction to every channel."""
    adapted = zoo.create(name, pretrained=True, in_chans=3).eval()
    x = _clip(3)
    with torch.no_grad():
        y = adapted(x, future_frames=2)
        y_perm = adapted(x[:, :, [2, 0, 1]], future_frames=2)
    torch.testing.assert_close(y_perm, y, rtol=0, atol=2e-5)
    torch.testing.assert_close(y[:, :, 1:], y[:, :, :1].expand(-1, -1, 2, -1, -1), rtol=0, atol=1e-6)


def test_the_adapted_model_saves_and_loads_back_bit_for_bit(tmp_path: Path):
    adapted = zoo.create("convttlstm-mnist-small", pretrained=True, in_chans=3).eval()
    zoo.save_pretrained(adapted, tmp_path / "rgb")
    again = zoo.create(f"local-dir:{tmp_path / 'rgb'}", pretrained=True).eval()
    assert again.in_channels == 3
    x = _clip(3)
    with torch.no_grad():
        assert torch.equal(again(x, future_frames=2), adapted(x, future_frames=2))


def test_weights_for_more_than_one_channel_are_refused_with_the_reason(tmp_path: Path):
    weights = tmp_path / "two.safetensors"
    save_file(zoo.create("convlstm-mnist-small", in_chans=2).state_dict(), weights)
    with pytest.raises(WeightsError, match=r"pretrained weights of 'convlstm-mnist-small' for 1 input channel\(s\) "
                                           r"cannot be adapted to in_chans=3: only weights for grayscale frames "
                                           r"\(1 channel\) are adapted; these are for 2"):
        zoo.create("convlstm-mnist-small", in_chans=3, checkpoint_path=weights)


def test_a_hook_that_returns_no_state_dict_is_the_plugins_error(monkeypatch):
    monkeypatch.setattr(VideoPredictionNet, "adapt_pretrained_in_chans", lambda self, state: None)
    with pytest.raises(PluginError, match="adapt_pretrained_in_chans returned NoneType, expected a state dict "
                                          r"\(family 'convttlstm'\)"):
        zoo.create("convlstm-mnist-small", pretrained=True, in_chans=3)


def test_the_hook_leaves_weights_for_its_own_channel_count_alone():
    model = zoo.create("convlstm-mnist-small", in_chans=3)
    state = model.state_dict()
    assert model.adapt_pretrained_in_chans(state) is state
