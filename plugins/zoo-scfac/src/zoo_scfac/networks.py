"""1-Lipschitz orthogonal networks built from SC-Fac layers (dissertation 7.5, 7.6.3, 7.7.2, Tables 7.4-7.6).

All convolutions use circular padding (exactly orthogonal layers), activations are GroupSort(2),
down-sampling is the window-scaled average pooling (or strided SC-Fac convolutions, Table 7.4
right), the head is an orthogonal linear map, and residual blocks merge by a convex combination.
Inputs are images in ``[0, 1]``; the models subtract a per-channel mean only, so the whole
network is 1-Lipschitz from pixel space to logits (a WideResNet adapted to other ``in_chans``: its input mix's
spectral norm, ``LipschitzWideResNet.lipschitz_bound``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from zoo_scfac.layers import OrthoConv2d, OrthoLinear
from zoo_scfac.lipschitz import ChannelShuffle, ConvexMerge, GroupSort, InputMix, LipschitzAvgPool2d, SubtractMean

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
SKIPS = ("add", "concat", "none")
DOWNSAMPLES = ("pool", "stride-slim", "stride-wide")


class _Classifier(nn.Module):
    """timm-style classifier plumbing: ``forward_features -> forward_head``; ``get_classifier`` / ``reset_classifier``.

    ``num_features``: channels (or width) of what ``forward_features`` returns; ``head_hidden_size``: width of the
    pre-logits the orthogonal head reads (``num_features`` where ``forward_features`` is already flat).
    """

    head: nn.Module
    num_features: int
    head_hidden_size: int
    num_classes: int

    def _init_classifier(self, num_features: int, num_classes: int, head_hidden_size: Optional[int] = None) -> None:
        self.num_features = num_features
        self.head_hidden_size = num_features if head_hidden_size is None else head_hidden_size
        self.reset_classifier(num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the head by a fresh orthogonal one reading ``head_hidden_size`` features (``num_classes = 0``:
        identity, pre-logits out).

        ``global_pool`` (timm's signature) may only be ``None`` or ``"avg"`` here: these models' features are
        already pooled and flat, so there is no unpooled map to return."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"{type(self).__name__}: global_pool={global_pool!r} is not supported (expected None or "
                             f"'avg'): the {self.num_features} features are already pooled and flat, not the "
                             f"channels of a feature map")
        self.num_classes = num_classes
        self.head = OrthoLinear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """timm's head step: the (already pooled) features through the orthogonal head unless ``pre_logits``."""
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W)`` in ``[0, 1]`` -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))


class _Convs(nn.Sequential):
    """``conv -> GroupSort -> conv`` (the residual branch ``f``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int, init: str, first: Optional[OrthoConv2d] = None,
                 order: str = "width-first") -> None:
        super().__init__(first or OrthoConv2d(c_in, c_out, kernel, dilation=dilation, init=init, order=order),
                         GroupSort(), OrthoConv2d(c_out, c_out, kernel, dilation=dilation, init=init, order=order))


class LipschitzBlock(nn.Module):
    """One block with skip type ``add`` (convex merge), ``concat`` (ShuffleNet) or ``none`` (plain ConvNet).

    ``downsample`` halves the resolution: ``pool`` (scaled average pooling before the block), ``stride-slim``
    (the first convolution has kernel = stride = 2) or ``stride-wide`` (kernel = 2 x kernel, stride 2).
    Output: ``GroupSort(merge(shortcut(x), f(x)))``. ``order``: the SC-Fac composition order of every convolution
    (:class:`zoo_scfac.layers.OrthoConv2d`).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1, skip: str = "add",
                 downsample: Optional[str] = None, init: str = "permutation", order: str = "width-first") -> None:
        super().__init__()
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
        if downsample not in (None,) + DOWNSAMPLES:
            raise ValueError(f"downsample must be None or one of {DOWNSAMPLES}, got {downsample!r}")
        self.skip = skip if (c_in == c_out and downsample is None) or skip == "add" else "none"
        self.pool = LipschitzAvgPool2d(2) if downsample == "pool" else nn.Identity()
        strided = downsample in ("stride-slim", "stride-wide")
        if self.skip == "concat":
            if c_in % 4:
                raise ValueError(f"concat blocks split {c_in} channels in halves of even size: need a multiple of 4")
            self.branch = _Convs(c_in // 2, c_in // 2, kernel, dilation, init, order=order)
            self.shuffle = ChannelShuffle(2)
        else:
            first = None
            if strided:
                k = 2 if downsample == "stride-slim" else 2 * kernel
                first = OrthoConv2d(c_in, c_out, k, stride=2, init=init, order=order)
            self.branch = _Convs(c_in, c_out, kernel, dilation, init, first=first, order=order)
        if self.skip == "add":
            self.merge = ConvexMerge()
            if strided:
                self.shortcut: nn.Module = OrthoConv2d(c_in, c_out, 2, stride=2, init=init, order=order)
            elif c_in != c_out:
                self.shortcut = OrthoConv2d(c_in, c_out, 1, init=init, order=order)
            else:
                self.shortcut = nn.Identity()
        self.act = GroupSort()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x)
        if self.skip == "add":
            y = self.merge(self.shortcut(x), self.branch(x))
        elif self.skip == "concat":
            a, b = x.chunk(2, dim=1)
            y = self.shuffle(torch.cat((a, self.branch(b)), dim=1))
        else:
            y = self.branch(x)
        return self.act(y)


class LipschitzWideResNet(_Classifier):
    """Lipschitz WideResNet-``depth``-``widen_factor`` (7.7.2): ``depth = 6 n + 4``, channels ``16/32/64 x k``.

    Fixed input mix, stem conv + GroupSort, three groups of ``n`` blocks (the first block of groups 2 and 3 halves the
    resolution), scaled average pooling with window ``pool_window`` (4, replacing global pooling), and an
    orthogonal linear head. ``skip``: ``add`` (ResNet), ``concat`` (ShuffleNet) or ``none`` (ConvNet), Table 7.4.
    ``order``: SC-Fac composition order of every convolution (``width-first``, Sec. 7.3.3's text, default;
    ``height-first``, Algorithm 1 and the official code).

    ``stem_chans`` (default ``in_chans``): the channels the stem convolution reads. ``input_mix``
    (:class:`zoo_scfac.lipschitz.InputMix`, the timm ``first_conv``) maps the ``in_chans`` pixels onto them; it is the
    identity when they are equal, and the per-channel mean (``input_mean``, ``stem_chans`` values) is subtracted
    after it. The network is ``lipschitz_bound``-Lipschitz (L2, pixels to logits): the mix's largest singular value
    (1 for the identity; ``sqrt(3)`` for one grey channel fed to a 3-channel stem), every later layer being 1-Lipschitz.
    State dicts without ``input_mix.weight`` (saved before the mix existed) load with the mix built for ``in_chans``
    (the identity for ``in_chans == stem_chans``).

    timm's view: ``forward_features`` is the last feature map ``(B, 64 k, H / 4, W / 4)`` (``num_features = 64 k``
    channels); ``forward_head`` applies the scaled average pooling (``global_pool="avg"``; 1-Lipschitz) and flattens
    it to the ``head_hidden_size = 64 k (H / 4 / pool_window)^2`` pre-logits the head reads; ``global_pool=""``
    (with ``num_classes=0``) returns the map itself.
    """

    global_pool = "avg"

    def __init__(self, depth: int = 22, widen_factor: int = 10, kernel_size: int = 5, dilation: int = 1,
                 skip: str = "add", downsample: str = "pool", init: str = "permutation", num_classes: int = 10,
                 in_chans: int = 3, img_size: int = 32, base_channels: Sequence[int] = (16, 32, 64),
                 pool_window: int = 4, input_mean: Optional[Sequence[float]] = None, hinge_margin: float = 0.1,
                 order: str = "width-first", stem_chans: Optional[int] = None) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}")
        if downsample not in DOWNSAMPLES:
            raise ValueError(f"downsample must be one of {DOWNSAMPLES}, got {downsample!r}")
        if img_size % 4:
            raise ValueError(f"img_size must be divisible by 4 (two down-samplings), got {img_size}")
        n = (depth - 4) // 6
        widths = [c * widen_factor for c in base_channels]
        self.depth, self.widen_factor, self.hinge_margin = depth, widen_factor, hinge_margin
        stem_chans = in_chans if stem_chans is None else stem_chans
        self.input_mix = InputMix(in_chans, stem_chans)
        self.normalize = SubtractMean(input_mean if input_mean is not None else _default_mean(stem_chans))
        self.stem = nn.Sequential(
            OrthoConv2d(stem_chans, widths[0], kernel_size, dilation=dilation, init=init, order=order), GroupSort())
        blocks: List[nn.Module] = []
        c_prev = widths[0]
        for g, c in enumerate(widths):
            for b in range(n):
                down = downsample if (g > 0 and b == 0) else None
                blocks.append(LipschitzBlock(c_prev, c, kernel_size, dilation, skip, down, init, order))
                c_prev = c
        self.blocks = nn.Sequential(*blocks)
        self.pool = LipschitzAvgPool2d(pool_window)
        side = img_size // 4 // pool_window
        if side < 1:
            raise ValueError(f"img_size {img_size} is too small for pool_window {pool_window}")
        self._init_classifier(widths[-1], num_classes, head_hidden_size=widths[-1] * side * side)
        self._group_size = n
        self.feature_info = [{"num_chs": widths[0], "reduction": 1, "module": "stem"}] + [
            {"num_chs": c, "reduction": 2 ** g, "module": f"blocks.{(g + 1) * n - 1}"} for g, c in enumerate(widths)]
        self._register_load_state_dict_pre_hook(self._identity_mix_for_old_state)

    @property
    def lipschitz_bound(self) -> float:
        """The network's L2 Lipschitz constant bound, pixels to logits: the input mix's largest singular value."""
        return self.input_mix.lipschitz_bound()

    def _identity_mix_for_old_state(self, state: Dict[str, Tensor], prefix: str, *args: Any) -> None:
        """Load-state-dict pre-hook: a state dict saved before the input mix existed was trained with the identity on
        the stem's channels; it gets the mix :class:`InputMix` (timm's rule) makes of that identity for ``in_chans``."""
        key = prefix + "input_mix.weight"
        if key not in state and any(k.startswith(prefix + "stem.") for k in state):
            mix = self.input_mix
            state[key] = InputMix(mix.in_chans, mix.out_chans).weight.to(mix.weight.dtype)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W)`` in ``[0, 1]`` -> the last feature map ``(B, num_features, H / 4, W / 4)``."""
        return self.blocks(self.stem(self.normalize(self.input_mix(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """``(B, num_features, h, w)`` -> scaled average pooling, flattened to ``(B, head_hidden_size)`` -> orthogonal
        head (unless ``pre_logits``); the map itself for ``global_pool=""``."""
        if self.global_pool == "":
            return x
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A fresh orthogonal head (identity for 0); ``global_pool`` ``"avg"`` (the scaled pooling) or ``""`` (none:
        the unpooled map, ``num_classes`` 0 only); ``None`` keeps the current one."""
        pool = self.global_pool if global_pool is None else global_pool
        if pool not in ("avg", ""):
            raise ValueError(f"LipschitzWideResNet supports global_pool 'avg' (scaled average pooling) or '' (none), "
                             f"got {pool!r}")
        if pool == "" and num_classes > 0:
            raise ValueError(f"global_pool='' leaves the (B, {self.num_features}, h, w) map unpooled, which a classifier "
                             f"of {num_classes} classes cannot read: use num_classes=0 with it")
        self.global_pool = pool
        super().reset_classifier(num_classes)

    def forward_intermediates(self, x: Tensor, indices: Optional[object] = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> object:
        """timm's ``forward_intermediates``: the maps of ``feature_info`` (stem, end of each group) selected by
        ``indices`` (all by default), and the final feature map (``forward_features``) unless ``intermediates_only``."""
        from zoo.intermediates import run_stages

        n = self._group_size
        stages = [nn.Sequential(self.input_mix, self.normalize, self.stem)] + [self.blocks[g * n:(g + 1) * n] for g in range(3)]
        x, maps = run_stages(stages, x, indices, output_fmt, stop_early, intermediates_only)
        return maps if intermediates_only else (x, maps)


class LipschitzResNet9(_Classifier):
    """Lipschitz ResNet9 (the DAWNBench layout of Trockman & Kolter's experiments, 7.7.2): widths ``(64, 128, 256, 512) x width``.

    prep conv; conv + pool + residual block; conv + pool; conv + pool + residual block; pool 4; orthogonal head.
    Max pooling is replaced by window-scaled average pooling and ReLU by GroupSort. ``order``: SC-Fac composition
    order of every convolution.
    """

    def __init__(self, width: float = 1, kernel_size: int = 3, init: str = "permutation", num_classes: int = 10,
                 in_chans: int = 3, img_size: int = 32, input_mean: Optional[Sequence[float]] = None,
                 hinge_margin: float = 0.1, order: str = "width-first") -> None:
        super().__init__()
        if img_size % 32:
            raise ValueError(f"img_size must be a multiple of 32 (three halvings and a 4x4 pool), got {img_size}")
        c = [_scaled(64, width), _scaled(128, width), _scaled(256, width), _scaled(512, width)]
        k = kernel_size
        self.hinge_margin = hinge_margin
        self.normalize = SubtractMean(input_mean if input_mean is not None else _default_mean(in_chans))

        def conv_pool(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(OrthoConv2d(a, b, k, init=init, order=order), GroupSort(), LipschitzAvgPool2d(2))

        self.features = nn.Sequential(
            OrthoConv2d(in_chans, c[0], k, init=init, order=order), GroupSort(),
            conv_pool(c[0], c[1]), LipschitzBlock(c[1], c[1], k, init=init, order=order),
            conv_pool(c[1], c[2]),
            conv_pool(c[2], c[3]), LipschitzBlock(c[3], c[3], k, init=init, order=order),
            LipschitzAvgPool2d(4),
        )
        side = img_size // 32
        self._init_classifier(c[3] * side * side, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(self.normalize(x)).flatten(1)


class LipschitzKWLarge(_Classifier):
    """Lipschitz KW-Large (Wong et al.'s large CIFAR network as used by Trockman & Kolter, 7.7.2).

    conv3 32w, conv4/2 32w, conv3 64w, conv4/2 64w (strided SC-Fac, polyphase), then orthogonal
    linear 512w, 512w and the head; GroupSort after every hidden layer. ``order``: SC-Fac composition order.
    """

    def __init__(self, width: float = 1, init: str = "permutation", num_classes: int = 10, in_chans: int = 3,
                 img_size: int = 32, input_mean: Optional[Sequence[float]] = None, hinge_margin: float = 0.1,
                 order: str = "width-first") -> None:
        super().__init__()
        if img_size % 4:
            raise ValueError(f"img_size must be divisible by 4, got {img_size}")
        self.hinge_margin = hinge_margin
        self.normalize = SubtractMean(input_mean if input_mean is not None else _default_mean(in_chans))
        a, b, h = _scaled(32, width), _scaled(64, width), _scaled(512, width)
        side = img_size // 4
        self.features = nn.Sequential(
            OrthoConv2d(in_chans, a, 3, init=init, order=order), GroupSort(),
            OrthoConv2d(a, a, 4, stride=2, init=init, order=order), GroupSort(),
            OrthoConv2d(a, b, 3, init=init, order=order), GroupSort(),
            OrthoConv2d(b, b, 4, stride=2, init=init, order=order), GroupSort(),
            nn.Flatten(),
            OrthoLinear(b * side * side, h), GroupSort(),
            OrthoLinear(h, h), GroupSort(),
        )
        self._init_classifier(h, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(self.normalize(x))


def _scaled(channels: int, width: float) -> int:
    """``channels x width`` rounded to a positive multiple of 2 (GroupSort pairs channels)."""
    c = int(round(channels * width / 2)) * 2
    if c < 2:
        raise ValueError(f"width {width} leaves {channels} x {width} < 2 channels")
    return c


def _default_mean(in_chans: int) -> Sequence[float]:
    return CIFAR10_MEAN if in_chans == 3 else (0.5,) * in_chans


def lipschitz_wrn(**kwargs) -> LipschitzWideResNet:
    """Builder ``lipschitz_wrn`` (keyword arguments of :class:`LipschitzWideResNet`)."""
    return LipschitzWideResNet(**kwargs)


def resnet9(**kwargs) -> LipschitzResNet9:
    """Builder ``resnet9`` (keyword arguments of :class:`LipschitzResNet9`)."""
    return LipschitzResNet9(**kwargs)


def kwlarge(**kwargs) -> LipschitzKWLarge:
    """Builder ``kwlarge`` (keyword arguments of :class:`LipschitzKWLarge`)."""
    return LipschitzKWLarge(**kwargs)
