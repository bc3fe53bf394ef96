"""The 12-layer prediction network: layout, skips, teacher forcing, long-horizon gradients, input errors."""

from __future__ import annotations

import pytest
import torch

from zoo_convttlstm.network import VideoPredictionNet

TT = dict(order=2, steps=3, ranks=2)


def small(cell="convttlstm", **kw):
    args = dict(hidden_channels=(3, 4, 4, 3), layers_per_block=(1, 1, 1, 1), kernel_size=3,
                cell_kwargs=TT if cell == "convttlstm" else None)
    args.update(kw)
    return VideoPredictionNet(1, cell, **args)


def test_twelve_layer_layout_and_skip_channels():
    m = VideoPredictionNet(1, "convttlstm", cell_kwargs=dict(order=3, steps=3, ranks=8))
    assert len(m.layers) == 12
    cins = [layer.in_channels for layer in m.layers]
    couts = [layer.hidden_channels for layer in m.layers]
    assert couts == [32] * 3 + [48] * 6 + [32] * 3
    assert cins[9] == 48 + 32  # layer 10 eats layer 9 concatenated with layer 3
    assert m.output.in_channels == 32 + 48  # output conv eats layer 12 concatenated with layer 6
    assert cins[:9] == [1, 32, 32, 32, 48, 48, 48, 48, 48]


@pytest.mark.parametrize("cell", ["convttlstm", "convlstm"])
@pytest.mark.parametrize("patch", [1, 2])
def test_output_shapes(cell, patch):
    m = small(cell, patch_size=patch)
    x = torch.rand(2, 4, 1, 8, 8)
    assert m(x, future_frames=3).shape == (2, 3, 1, 8, 8)
    assert m(x, future_frames=3, return_all=True).shape == (2, 6, 1, 8, 8)


def test_sigmoid_output_in_unit_interval():
    m = small(output_sigmoid=True)
    y = m(torch.rand(1, 3, 1, 6, 6) * 10, future_frames=2)
    assert y.min() >= 0 and y.max() <= 1


def test_teacher_forcing_one_equals_feeding_true_frames():
    torch.manual_seed(0)
    m = small().double()
    x = torch.rand(2, 3, 1, 6, 6, dtype=torch.float64)
    y = torch.rand(2, 4, 1, 6, 6, dtype=torch.float64)
    forced = m(x, future_frames=4, targets=y, teacher_forcing_ratio=1.0)
    full = m(torch.cat([x, y[:, :3]], dim=1), future_frames=1, return_all=True)[:, -4:]
    assert torch.allclose(forced, full)
    free = m(x, future_frames=4, targets=y, teacher_forcing_ratio=0.0)
    assert torch.allclose(free, m(x, future_frames=4)) and not torch.allclose(free, forced)


def test_prediction_is_causal():
    """Changing frame t of the input cannot change predictions of frames <= t."""
    torch.manual_seed(0)
    m = small().double()
    x = torch.rand(1, 5, 1, 6, 6, dtype=torch.float64)
    a = m(x, future_frames=1, return_all=True)
    x2 = x.clone()
    x2[:, 3] += 1
    b = m(x2, future_frames=1, return_all=True)
    assert torch.allclose(a[:, :3], b[:, :3]) and not torch.allclose(a[:, 3:], b[:, 3:])


@pytest.mark.parametrize("cell", ["convttlstm", "convlstm"])
def test_gradients_finite_over_40_recurrent_steps(cell):
    torch.manual_seed(0)
    m = small(cell) if cell == "convlstm" else small(cell, cell_kwargs=dict(order=3, steps=5, ranks=2))
    x = torch.rand(1, 10, 1, 6, 6)
    out = m(x, future_frames=31)  # 40 recurrent steps
    out.square().mean().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads[:3])  # the first layer receives gradient through 40 steps


@pytest.mark.parametrize(
    "call,match",
    [(lambda m: m(torch.rand(1, 3, 6, 6)), "5-D"),
     (lambda m: m(torch.rand(1, 3, 2, 6, 6)), "1 channels"),
     (lambda m: m(torch.rand(1, 3, 1, 6, 6), future_frames=2, teacher_forcing_ratio=0.5), "targets"),
     (lambda m: m(torch.rand(1, 3, 1, 6, 6), future_frames=3, targets=torch.rand(1, 1, 1, 6, 6),
                  teacher_forcing_ratio=0.5), r"\(B, >= 2"),
     (lambda m: m(torch.rand(1, 3, 1, 6, 6), teacher_forcing_ratio=1.5), r"\[0, 1\]"),
     (lambda m: m(torch.rand(1, 3, 1, 6, 6), future_frames=0), "future_frames")],
)
def test_network_rejects_malformed_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(small())


def test_network_rejects_bad_configuration():
    with pytest.raises(ValueError, match="cell must be"):
        VideoPredictionNet(cell="gru")
    with pytest.raises(ValueError, match="one entry per block"):
        VideoPredictionNet(hidden_channels=(4, 4), layers_per_block=(1,))
    with pytest.raises(ValueError, match="divisible"):
        small(patch_size=4)(torch.rand(1, 2, 1, 6, 6))
