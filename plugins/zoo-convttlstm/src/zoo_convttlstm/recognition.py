"""Early activity recognition model of Fig. 4.6b / Sec. 4.7.2.

2-D CNN encoder (two stride-2 convolutions, 64 channels: 224 -> 56), a reduced prediction network
(4 blocks x 2 recurrent layers, 32/48/48/32 channels, skips) running on the encoded frames, a 2-D CNN decoder
(two stride-2 transposed convolutions: 56 -> 224; the second outputs the frame channels, then a sigmoid),
and a 3-D CNN classifier on the top recurrent features of the last ``classifier_frames`` steps: two stride-2
(spatial) 3-D convolutions with 128 channels, each followed by 3-D pooling (56 -> 28 -> 14 -> 7 -> 7; the
second pooling is temporal only, so that the resolution ends at 7 x 7 as the text says), then a two-layer
perceptron with 512 hidden units. An adaptive pooling to (4, 7, 7) before the perceptron keeps other frame
sizes usable (it is the identity at 224 x 224 with 16 frames).
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .network import VideoPredictionNet, check_video


class RecognitionOutput(NamedTuple):
    """logits (B, num_classes) and predicted frames (B, future_frames, C, H, W)."""

    logits: torch.Tensor
    frames: torch.Tensor


class EarlyActivityRecognizer(nn.Module):
    """Encoder -> Conv-TT-LSTM / ConvLSTM predictor -> decoder, with a 3-D CNN classifier on its features."""

    def __init__(
        self,
        cell: str = "convttlstm",
        num_classes: int = 41,
        in_channels: int = 3,
        width: int = 64,
        hidden_channels: Sequence[int] = (32, 48, 48, 32),
        layers_per_block: Sequence[int] = (2, 2, 2, 2),
        kernel_size: int = 5,
        cell_kwargs: Optional[Dict[str, Any]] = None,
        classifier_frames: int = 16,
        classifier_channels: int = 128,
        hidden_units: int = 512,
    ) -> None:
        super().__init__()
        if num_classes < 1 or classifier_frames < 1:
            raise ValueError(f"num_classes and classifier_frames must be >= 1, got {num_classes}, {classifier_frames}")
        self.in_channels, self.num_classes, self.classifier_frames = in_channels, num_classes, classifier_frames
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        self.predictor = VideoPredictionNet(width, cell, hidden_channels, layers_per_block, skip_stride=2,
                                            kernel_size=kernel_size, cell_kwargs=cell_kwargs)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, in_channels, 4, stride=2, padding=1),
        )
        c = classifier_channels
        self.classifier = nn.Sequential(
            nn.Conv3d(self.predictor.feature_channels, c, 3, stride=(1, 2, 2), padding=1), nn.ReLU(inplace=True),
            nn.MaxPool3d((2, 2, 2), ceil_mode=True),
            nn.Conv3d(c, c, 3, stride=(1, 2, 2), padding=1), nn.ReLU(inplace=True),
            nn.MaxPool3d((2, 1, 1), ceil_mode=True),
            nn.AdaptiveAvgPool3d((4, 7, 7)), nn.Flatten(),
            nn.Linear(c * 4 * 7 * 7, hidden_units), nn.ReLU(inplace=True), nn.Linear(hidden_units, num_classes),
        )

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def forward(self, inputs: torch.Tensor, future_frames: int = 10) -> RecognitionOutput:
        """inputs (B, T, C, H, W) with H, W divisible by 4 -> logits and ``future_frames`` predicted frames."""
        check_video(inputs, self.in_channels)
        b, t, c, h, w = inputs.shape
        if h % 4 or w % 4:
            raise ValueError(f"frame size {h}x{w} must be divisible by 4 (two stride-2 encoder layers)")
        if future_frames < 1:
            raise ValueError(f"future_frames must be >= 1, got {future_frames}")
        codes = self.encoder(inputs.reshape(b * t, c, h, w))
        codes = codes.view(b, t, *codes.shape[1:])
        states = [None] * len(self.predictor.layers)
        feats, outs = [], []
        for s in range(t + future_frames - 1):
            frame = codes[:, s] if s < t else outs[-1]
            out, feat = self.predictor.step_with_features(frame, states)
            outs.append(out)
            feats.append(feat)
        pred = torch.stack(outs[-future_frames:], dim=1)
        frames = torch.sigmoid(self.decoder(pred.flatten(0, 1))).view(b, future_frames, c, h, w)
        clip = torch.stack(feats[-self.classifier_frames :], dim=2)  # (B, F, T', H/4, W/4)
        return RecognitionOutput(self.classifier(clip), frames)


def recognition_loss(
    output: RecognitionOutput, labels: torch.Tensor, future: Optional[torch.Tensor], weight: float
) -> torch.Tensor:
    """Cross-entropy + ``weight`` x (L1 + L2) of the predicted frames (weight decays on plateaus, Sec. 4.7.3)."""
    loss = F.cross_entropy(output.logits, labels)
    if future is not None and weight > 0:
        n = min(future.shape[1], output.frames.shape[1])
        p, f = output.frames[:, :n], future[:, :n]
        loss = loss + weight * (F.l1_loss(p, f) + F.mse_loss(p, f))
    return loss
