"""Conv-LSTM and ARMA-LSTM video predictors of 6.5.2 (Fig. 6.7a, Table 6.3).

12 stacked cells of 32 units; skip connections concatenate the output of cell 3 with that of cell 9 (the
result feeds cell 10) and the output of cell 6 with that of cell 12 (the result feeds the 1x1 output
convolution). Each cell's gates come from one convolution of ``[x, h]`` to ``4 * hidden`` channels: a
``k x k`` convolution (optionally dilated) or an ARMA layer (MA ``k x k``, AR ``ar_kernel_size``).
With these choices the parameter counts are 887,489 (3x3), 2,462,401 (5x5) and 893,633 (ARMA 3x3/3x3),
i.e. the 0.887M / 2.462M / 0.893M of Table 6.3 (truncated to three decimals).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .layer import ARMAConv2d

__all__ = ["ConvLSTMCell", "ConvLSTMNet"]


class ConvLSTMCell(nn.Module):
    """``(x (B, S, H, W), (h, c) (B, hidden, H, W)) -> (h', c')`` with gates ``i, f, o, g`` from one conv."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, dilation: int = 1, arma: bool = False, ar_kernel_size: int = 3, ar_padding: int = 0) -> None:
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        if arma:
            self.gates: nn.Conv2d = ARMAConv2d(in_channels + hidden, 4 * hidden, kernel_size, ar_kernel_size=ar_kernel_size, padding=pad, dilation=dilation, ar_padding=ar_padding)
        else:
            self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=pad, dilation=dilation)
        self.hidden = hidden

    def forward(self, x: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTMNet(nn.Module):
    """Multi-frame video predictor: ``(B, T, C, H, W)`` context frames -> ``(B, future_frames, C, H, W)`` next frames.

    The context frames are read one by one; every later step feeds back the previous prediction.

    Args:
        in_chans: frame channels (1 for Moving-MNIST). hidden: units per cell. layers: number of cells.
        skips: 1-based ``(a, b)`` pairs; the output of cell ``a`` is concatenated to that of cell ``b``.
        kernel_size, dilation: the (moving-average) convolution. arma / ar_kernel_size / ar_padding: ARMA cells.
        future_frames: default number of predicted frames.
    """

    def __init__(
        self,
        in_chans: int = 1,
        hidden: int = 32,
        layers: int = 12,
        skips: Sequence[Sequence[int]] = ((3, 9), (6, 12)),
        kernel_size: int = 3,
        dilation: int = 1,
        arma: bool = False,
        ar_kernel_size: int = 3,
        ar_padding: int = 0,
        future_frames: int = 10,
    ) -> None:
        super().__init__()
        self.skips = {int(b): int(a) for a, b in skips}
        for b, a in self.skips.items():
            if not 1 <= a < b <= layers:
                raise ValueError(f"skip ({a}, {b}) must satisfy 1 <= a < b <= layers={layers}")
        cells: List[nn.Module] = []
        cin = in_chans
        for layer in range(1, layers + 1):
            cells.append(ConvLSTMCell(cin, hidden, kernel_size, dilation, arma, ar_kernel_size, ar_padding))
            cin = 2 * hidden if layer in self.skips else hidden
        self.cells = nn.ModuleList(cells)
        self.head = nn.Conv2d(cin, in_chans, 1)
        self.in_chans, self.hidden, self.future_frames = in_chans, hidden, future_frames

    def _step(self, frame: Tensor, states: List[Tuple[Tensor, Tensor]]) -> Tensor:
        outputs: List[Tensor] = []
        x = frame
        for k, cell in enumerate(self.cells):
            states[k] = cell(x, states[k])
            h = states[k][0]
            outputs.append(h)
            layer = k + 1
            x = torch.cat([outputs[self.skips[layer] - 1], h], dim=1) if layer in self.skips else h
        return self.head(x)

    def forward(self, x: Tensor, future_frames: Optional[int] = None) -> Tensor:
        if x.dim() != 5 or x.shape[2] != self.in_chans:
            raise ValueError(f"expected frames (B, T, {self.in_chans}, H, W), got {tuple(x.shape)}")
        future = self.future_frames if future_frames is None else int(future_frames)
        b, t, _, h, w = x.shape
        zeros = x.new_zeros(b, self.hidden, h, w)
        states = [(zeros, zeros) for _ in self.cells]
        preds: List[Tensor] = []
        frame = x[:, 0]
        for step in range(t + future - 1):
            out = self._step(frame, states)
            if step >= t - 1:
                preds.append(out)
            frame = x[:, step + 1] if step + 1 < t else out
        return torch.stack(preds, dim=1)
