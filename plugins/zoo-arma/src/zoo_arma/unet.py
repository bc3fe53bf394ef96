"""U-Net [145] for binary segmentation, with optional ARMA layers and non-local blocks (6.5.3, Fig. 6.14).

Layout (width ``w``): five encoder stages of two 3x3 conv-BN-ReLU layers with ``w, 2w, 4w, 8w, 16w``
channels separated by 2x2 max-pooling; four decoder stages, each an up-convolution (2x nearest upsampling,
3x3 conv-BN-ReLU halving the channels) concatenated with the skip and two 3x3 conv-BN-ReLU layers; a 1x1
convolution to the logits. ``arma=True`` replaces every 3x3 convolution by an :class:`ARMAConv2d` (MA 3x3,
AR ``ar_kernel_size``); the 1x1 head stays a plain convolution. ``nonlocal_blocks=True`` inserts an
embedded-Gaussian non-local block after the bottleneck (1/16 resolution) and after the first decoder stage
(1/8 resolution): a reconstruction of the non-local U-Net of Fig. 6.14b, whose layout neither the text nor the
official code (umd-huang-lab/ARMA-Networks has no non-local U-Net) gives. Without them the layout and its counts
(34,527,041; ARMA 34,554,433) equal the official ``U_Net`` that the official code builds for ISIC, layer for layer
(tests/arma/test_unet_sizes.py).
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layer import ARMAConv2d
from .nonlocal_block import NonLocalBlock2d

__all__ = ["UNet"]


class _ConvFactory:
    def __init__(self, arma: bool, ar_kernel_size: int, ar_padding: int) -> None:
        self.arma, self.ar_kernel_size, self.ar_padding = arma, ar_kernel_size, ar_padding

    def __call__(self, cin: int, cout: int) -> nn.Conv2d:
        if self.arma:
            return ARMAConv2d(cin, cout, 3, ar_kernel_size=self.ar_kernel_size, ar_padding=self.ar_padding)
        return nn.Conv2d(cin, cout, 3, padding=1)


def _conv_bn_relu(conv: nn.Module, cout: int) -> List[nn.Module]:
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, conv: _ConvFactory) -> None:
        super().__init__(*_conv_bn_relu(conv(cin, cout), cout), *_conv_bn_relu(conv(cout, cout), cout))


class _UpConv(nn.Module):
    """2x nearest upsampling (to the skip's size) then 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, cout: int, conv: _ConvFactory) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn_relu(conv(cin, cout), cout))

    def forward(self, x: Tensor, size: torch.Size) -> Tensor:
        return self.body(F.interpolate(x, size=size, mode="nearest"))


class UNet(nn.Module):
    """``(B, in_chans, H, W) -> (B, num_classes, H, W)`` segmentation logits; any ``H, W >= 16``.

    Args:
        in_chans: input channels. num_classes: output channels (1 for binary lesion masks).
        width: channels of the first stage (64 in the dissertation; smaller for the CPU demo).
        arma: use ARMA layers for all 3x3 convolutions. ar_kernel_size / ar_padding: see ARMAConv2d.
        nonlocal_blocks: insert the two non-local blocks (see the module docstring).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        width: int = 64,
        arma: bool = False,
        ar_kernel_size: int = 3,
        ar_padding: int = 0,
        nonlocal_blocks: bool = False,
    ) -> None:
        super().__init__()
        conv = _ConvFactory(arma, ar_kernel_size, ar_padding)
        ch = [width * m for m in (1, 2, 4, 8, 16)]
        self.encoder = nn.ModuleList([_DoubleConv(in_chans, ch[0], conv)] + [_DoubleConv(ch[i - 1], ch[i], conv) for i in range(1, 5)])
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList([_UpConv(ch[i], ch[i - 1], conv) for i in range(4, 0, -1)])
        self.decoder = nn.ModuleList([_DoubleConv(2 * ch[i - 1], ch[i - 1], conv) for i in range(4, 0, -1)])
        self.head = nn.Conv2d(ch[0], num_classes, 1)
        self.nl_bottleneck = NonLocalBlock2d(ch[4]) if nonlocal_blocks else None
        self.nl_decoder = NonLocalBlock2d(ch[3]) if nonlocal_blocks else None
        self.in_chans, self.num_classes = in_chans, num_classes

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected input (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 16:
            raise ValueError(f"U-Net needs H, W >= 16 (four 2x poolings), got {tuple(x.shape[-2:])}")
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else self.pool(x))
            skips.append(x)
        if self.nl_bottleneck is not None:
            x = self.nl_bottleneck(x)
        for i, (up, dec) in enumerate(zip(self.ups, self.decoder)):
            skip = skips[3 - i]
            x = dec(torch.cat([skip, up(x, skip.shape[-2:])], dim=1))
            if i == 0 and self.nl_decoder is not None:
                x = self.nl_decoder(x)
        return self.head(x)

    def get_classifier(self) -> nn.Module:
        return self.head
