"""Early-activity-recognition model of Fig. 4.6b."""

from __future__ import annotations

import pytest
import torch

from zoo_convttlstm.recognition import EarlyActivityRecognizer
from zoo_convttlstm.training import training_step

TINY = dict(width=4, hidden_channels=(3, 3, 3, 3), kernel_size=3, cell_kwargs=dict(order=2, steps=2, ranks=2),
            classifier_channels=4, hidden_units=8)


def test_full_size_layout():
    m = EarlyActivityRecognizer(cell_kwargs=dict(order=3, steps=3, ranks=8))
    assert len(m.predictor.layers) == 8  # 4 blocks x 2 layers
    assert m.encoder[0].stride == (2, 2) and m.encoder[2].out_channels == 64
    assert m.get_classifier().out_features == 41 and m.classifier[-3].out_features == 512


def test_resolution_path_224_to_7():
    """Encoder 224 -> 56; classifier convolutions + pooling 56 -> 28 -> 14 -> 7 -> 7 and 16 -> 8 -> 4 frames."""
    torch.manual_seed(0)
    m = EarlyActivityRecognizer(**TINY, classifier_frames=16).eval()
    with torch.no_grad():
        assert m.encoder(torch.rand(1, 3, 224, 224)).shape == (1, 4, 56, 56)
        feats = torch.rand(1, m.predictor.feature_channels, 16, 56, 56)
        assert m.classifier[:6](feats).shape == (1, 4, 4, 7, 7)  # the adaptive pooling is then the identity
        assert m.classifier(feats).shape == (1, 41)
        assert m.decoder(torch.rand(1, 4, 56, 56)).shape == (1, 3, 224, 224)
        out = m(torch.rand(1, 3, 3, 32, 32), future_frames=2)
    assert out.logits.shape == (1, 41) and out.frames.shape == (1, 2, 3, 32, 32)
    assert out.frames.min() >= 0 and out.frames.max() <= 1


def test_recognition_training_step_and_gradients():
    torch.manual_seed(0)
    m = EarlyActivityRecognizer(cell="convlstm", num_classes=5, **{k: v for k, v in TINY.items() if k != "cell_kwargs"},
                                classifier_frames=4)
    x, y, fut = torch.rand(2, 3, 3, 16, 16), torch.tensor([1, 4]), torch.rand(2, 2, 3, 16, 16)
    entry = type("E", (), {"task": "activity-recognition"})()
    loss = training_step(m, (x, y, fut), entry)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert m.encoder[0].weight.grad.abs().sum() > 0
    m.prediction_weight = 0.0
    out = m(x, future_frames=2)
    assert torch.allclose(training_step(m, (x, y, fut), entry), torch.nn.functional.cross_entropy(out.logits, y))


def test_recognition_rejects_malformed_input():
    m = EarlyActivityRecognizer(**TINY)
    with pytest.raises(ValueError, match="divisible by 4"):
        m(torch.rand(1, 2, 3, 18, 18))
    with pytest.raises(ValueError, match="3 channels"):
        m(torch.rand(1, 2, 1, 16, 16))
