"""The multi-layer video prediction network of Sec. 4.7.2 / Fig. 4.6a.

Blocks of recurrent layers (default 4 blocks x 3 layers with 32/48/48/32 channels); the output of block
``b`` is concatenated over channels with the output of block ``b - skip_stride`` (skip_stride=2 gives the
(3, 9) and (6, 12) skips of a 12-layer net); a 1x1 output convolution maps to the frame channels, followed
by a sigmoid when ``output_sigmoid`` (KTH). Frames are optionally folded into ``patch_size``^2 channels
(space-to-depth) before the recurrent layers, a reduced-cost option used only by the small demo models.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .cells import ConvLSTMCell, ConvTTLSTMCell

CELLS = ("convlstm", "convttlstm")


def check_video(x: torch.Tensor, channels: int, name: str = "inputs") -> None:
    """Raise ``ValueError`` unless ``x`` is (batch, time, channels, height, width)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 5-D tensor (batch, time, channels, height, width), got {shape}")
    if x.shape[2] != channels:
        raise ValueError(f"{name} must have {channels} channels at dim 2 (B, T, C, H, W), got shape {tuple(x.shape)}")


class VideoPredictionNet(nn.Module):
    """Stacked ConvLSTM / Conv-TT-LSTM predictor, (B, T, C, H, W) frames in, predicted frames out.

    Args:
        in_channels: frame channels C.
        cell: "convttlstm" or "convlstm".
        hidden_channels, layers_per_block: channels and depth of each block.
        skip_stride: concatenate block b's output with block b - skip_stride's (None: no skips).
        kernel_size: K of every recurrent convolution.
        cell_kwargs: extra ConvTTLSTMCell arguments (order, steps, ranks, window).
        output_sigmoid: apply a sigmoid to the predicted frames.
        patch_size: fold p x p pixel patches into channels before the recurrent layers (1 = off).
        padding_mode, backend: passed to every cell.
    """

    def __init__(
        self,
        in_channels: int = 1,
        cell: str = "convttlstm",
        hidden_channels: Sequence[int] = (32, 48, 48, 32),
        layers_per_block: Sequence[int] = (3, 3, 3, 3),
        skip_stride: Optional[int] = 2,
        kernel_size: int = 5,
        cell_kwargs: Optional[Dict[str, Any]] = None,
        output_sigmoid: bool = False,
        patch_size: int = 1,
        padding_mode: str = "zeros",
        backend: str = "torch",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
        if len(hidden_channels) != len(layers_per_block) or not hidden_channels:
            raise ValueError(
                f"hidden_channels and layers_per_block need one entry per block, got {list(hidden_channels)} "
                f"and {list(layers_per_block)}"
            )
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        cell_kwargs = dict(cell_kwargs or {})
        if cell == "convlstm" and cell_kwargs:
            raise ValueError(f"ConvLSTM takes no cell_kwargs, got {sorted(cell_kwargs)}")
        self.in_channels, self.patch_size = in_channels, patch_size
        self.cell_type, self.output_sigmoid = cell, output_sigmoid
        self.hidden_channels, self.layers_per_block = list(hidden_channels), list(layers_per_block)
        self.skip_stride = skip_stride
        nb = len(hidden_channels)
        frame_channels = in_channels * patch_size**2
        self.layers = nn.ModuleList()
        for b in range(nb):
            for l in range(layers_per_block[b]):
                if l > 0:
                    cin = hidden_channels[b]
                elif b == 0:
                    cin = frame_channels
                else:
                    cin = hidden_channels[b - 1] + self._skip_channels(b - 1)
                common = dict(kernel_size=kernel_size, padding_mode=padding_mode, backend=backend)
                if cell == "convlstm":
                    self.layers.append(ConvLSTMCell(cin, hidden_channels[b], **common))
                else:
                    self.layers.append(ConvTTLSTMCell(cin, hidden_channels[b], **cell_kwargs, **common))
        self.output = nn.Conv2d(hidden_channels[-1] + self._skip_channels(nb - 1), frame_channels, 1)
        nn.init.xavier_normal_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def adapt_pretrained_in_chans(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``state`` saved for grayscale frames, for this net's ``in_channels`` C (``zoo.create(name,
        pretrained=True, in_chans=C)``): the first layer's frame filters are repeated over the C channels and
        divided by C, the output convolution's filters and bias repeated, per folded patch position. A gray
        video given as C equal channels is then predicted as the original predicts it, in every channel.
        Raises ``ValueError`` for weights saved for more than one channel."""
        p2 = self.patch_size**2
        key = f"layers.0.{self.layers[0].input_kernel}"
        out_w, out_b, first = state.get("output.weight"), state.get("output.bias"), state.get(key)
        if out_w is None or first is None or out_w.dim() != 4 or first.dim() != 4:
            raise ValueError(f"expected 4-d tensors output.weight and {key} in the weights")
        if out_w.shape[0] % p2:
            raise ValueError(f"output.weight has {out_w.shape[0]} rows, expected a multiple of patch_size^2 = {p2}")
        saved, c = out_w.shape[0] // p2, self.in_channels
        if saved == c:
            return state
        if saved != 1:
            raise ValueError(f"only weights for grayscale frames (1 channel) are adapted; these are for {saved}")
        adapted = dict(state)
        adapted[key] = torch.cat([first[:, :p2].repeat(1, c, 1, 1) / c, first[:, p2:]], dim=1)
        adapted["output.weight"] = out_w.repeat(c, 1, 1, 1)
        if out_b is not None:
            adapted["output.bias"] = out_b.repeat(c)
        return adapted

    def _skip_channels(self, b: int) -> int:
        """Channels concatenated to block b's output by the skip connection (0 if none)."""
        s = self.skip_stride
        return self.hidden_channels[b - s] if s is not None and b >= s else 0

    # ----- one step -------------------------------------------------------------------------------
    def step(self, frame: torch.Tensor, states: List[Any]) -> torch.Tensor:
        """One recurrent step: frame (B, C', H', W') in feature layout -> next frame, same layout.

        ``states`` (one per layer, ``None`` at the start) is updated in place."""
        return self.step_with_features(frame, states)[0]

    def step_with_features(self, frame: torch.Tensor, states: List[Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`step`, also returning the top features fed to the output convolution (B, F, H', W')."""
        x, k, queue = frame, 0, []
        for b, n in enumerate(self.layers_per_block):
            for _ in range(n):
                x, states[k] = self.layers[k](x, states[k])
                k += 1
            queue.append(x)
            if self.skip_stride is not None and b >= self.skip_stride:
                x = torch.cat([x, queue.pop(0)], dim=1)
        y = self.output(x)
        return (torch.sigmoid(y) if self.output_sigmoid else y), x

    @property
    def feature_channels(self) -> int:
        """Channels of the top features (last block + its skip)."""
        return self.output.in_channels

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, self.patch_size) if self.patch_size > 1 else x

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(x, self.patch_size) if self.patch_size > 1 else x

    def forward(
        self,
        inputs: torch.Tensor,
        future_frames: int = 10,
        targets: Optional[torch.Tensor] = None,
        teacher_forcing_ratio: float = 0.0,
        return_all: bool = False,
    ) -> torch.Tensor:
        """Predict ``future_frames`` frames after ``inputs`` (B, T_in, C, H, W).

        During the future steps the network eats its own previous prediction, except that with probability
        ``teacher_forcing_ratio`` (drawn per sample and step, scheduled sampling) it eats the true frame
        ``targets[:, k]`` (B, >= future_frames - 1, C, H, W) instead.
        Returns (B, future_frames, C, H, W), or with ``return_all`` the predictions of frames 2..T_in+future
        (B, T_in + future_frames - 1, C, H, W)."""
        check_video(inputs, self.in_channels)
        b, t_in, _, hh, ww = inputs.shape
        p = self.patch_size
        if hh % p or ww % p:
            raise ValueError(f"frame size {hh}x{ww} must be divisible by patch_size={p}")
        if future_frames < 0 or (future_frames == 0 and not return_all):
            raise ValueError(f"future_frames must be >= 1 (or 0 with return_all), got {future_frames}")
        if not 0.0 <= teacher_forcing_ratio <= 1.0:
            raise ValueError(f"teacher_forcing_ratio must be in [0, 1], got {teacher_forcing_ratio}")
        mask = None
        if teacher_forcing_ratio > 0 and future_frames > 1:
            if targets is None:
                raise ValueError("teacher_forcing_ratio > 0 needs the true future frames as targets")
            check_video(targets, self.in_channels, "targets")
            if targets.shape[1] < future_frames - 1 or targets.shape[3:] != inputs.shape[3:]:
                raise ValueError(
                    f"targets must be (B, >= {future_frames - 1}, C, {hh}, {ww}), got {tuple(targets.shape)}"
                )
            shape = (b, future_frames - 1, 1, 1, 1)
            mask = torch.bernoulli(torch.full(shape, float(teacher_forcing_ratio), device=inputs.device))
        states: List[Any] = [None] * len(self.layers)
        outputs: List[torch.Tensor] = []
        for t in range(t_in + future_frames - 1):
            if t < t_in:
                frame = self._fold(inputs[:, t])
            elif mask is None:
                frame = outputs[-1]
            else:
                m = mask[:, t - t_in]
                frame = m * self._fold(targets[:, t - t_in]) + (1 - m) * outputs[-1]
            outputs.append(self.step(frame, states))
        keep = outputs if return_all else outputs[-future_frames:]
        return torch.stack([self._unfold(o) for o in keep], dim=1)

    def macs_per_step(self, height: int, width: int) -> int:
        """Multiplications of one-step prediction for an H x W frame (all layers + output conv)."""
        hh, ww = height // self.patch_size, width // self.patch_size
        total = sum(layer.macs(hh, ww) for layer in self.layers)
        return total + self.output.weight.numel() * hh * ww
