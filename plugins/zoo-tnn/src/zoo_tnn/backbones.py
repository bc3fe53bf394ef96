"""Backbones the dissertation's tables use and timm lacks: LeNet-5, CIFAR ResNet-20/32/56 and ResNet-34,
WRN-16-2 / WRN-28-10, and the CIFAR VGG-16 of Table 2.9.

All take ``num_classes`` and ``in_chans`` and implement ``get_classifier()`` /
``reset_classifier(num_classes)`` with timm semantics. Inputs: LeNet-5 ``(B, C, 28, 28)``; the others
``(B, C, 32, 32)`` (the ResNets and WRNs take any size thanks to global pooling; VGG-16 needs 32 x 32).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Classifier:
    """timm-style classifier access for a model whose head is ``self.<classifier_name>``: ``get_classifier``,
    ``reset_classifier(num_classes, global_pool)`` and ``forward_head`` (global average pooling of a feature map,
    ``global_pool=''`` for none, then the classifier)."""

    classifier_name = "fc"
    num_features: int
    global_pool: str = "avg"

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool a (B, C, H, W) feature map (unless ``global_pool=''``), then classify (unless ``pre_logits``)."""
        if self.global_pool == "avg":  # static test: FX traces this method
            x = x.mean((2, 3))
        return x if pre_logits else self.get_classifier()(x)

    def reset_classifier(self, num_classes: int, global_pool: Any = None) -> None:
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"{type(self).__name__} supports global_pool 'avg' or '' (none), got {global_pool!r}")
            self.global_pool = global_pool
        old = self.get_classifier()
        self.num_classes = num_classes
        width = getattr(self, "head_hidden_size", self.num_features)  # what the classifier reads
        new: nn.Module = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(old, nn.Linear) and num_classes > 0:
            new = new.to(device=old.weight.device, dtype=old.weight.dtype)
        setattr(self, self.classifier_name, new)


class LeNet5(_Classifier, nn.Module):
    """LeNet-5 (LeCun et al. 1998) for 28 x 28 inputs: conv5(6, pad 2)-pool-conv5(16)-pool-120-84-classes, ReLU.

    timm's view: ``forward_features`` is the last feature map (B, 16, 5, 5) (``num_features`` = 16); the head flattens
    it (``global_pool="flatten"``) into the 120-84 MLP, whose 84 outputs are the pre-logits (``head_hidden_size``);
    ``global_pool=""`` (with ``num_classes=0``) returns the map itself, as a timm head without pooling does.
    ``feature_info``: the last map at each reduction, conv1 (6 x 28 x 28), conv2 (16 x 10 x 10), pool2 (16 x 5 x 5).
    """

    classifier_name = "fc3"
    global_pool = "flatten"

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.num_classes, self.num_features, self.head_hidden_size = num_classes, 16, 84
        self.conv1 = nn.Conv2d(in_chans, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3: nn.Module = nn.Linear(84, num_classes) if num_classes > 0 else nn.Identity()
        # parameter-free modules, so that hooks (e.g. Seq-KD block outputs) can see post-activation maps
        self.act1, self.act2, self.act3, self.act4 = nn.ReLU(), nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool1, self.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)
        self.pretrained_cfg = {"first_conv": "conv1", "classifier": "fc3"}
        self.feature_info = [{"num_chs": 6, "reduction": 1, "module": "act1"},
                             {"num_chs": 16, "reduction": 2, "module": "act2"},
                             {"num_chs": 16, "reduction": 4, "module": "pool2"}]

    def _stages(self) -> List[Callable[[Tensor], Tensor]]:
        """The trunk cut at each ``feature_info`` map."""
        return [lambda x: self.act1(self.conv1(x)), lambda x: self.act2(self.conv2(self.pool1(x))), self.pool2]

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, 28, 28) -> the last feature map (B, 16, 5, 5)."""
        for stage in self._stages():
            x = stage(x)
        return x

    def forward_intermediates(self, x: Tensor, indices: Any = None, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False) -> Any:
        """timm's ``forward_intermediates``: the maps of ``feature_info`` selected by ``indices`` (all by default),
        and the final features unless ``intermediates_only``."""
        from zoo.intermediates import run_stages

        x, maps = run_stages(self._stages(), x, indices, output_fmt, stop_early, intermediates_only)
        return maps if intermediates_only else (x, maps)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, 16, 5, 5) -> flatten -> fc1 -> fc2 (the 84 pre-logits) -> fc3; the map itself for ``global_pool=""``."""
        if self.global_pool == "":
            return x
        x = self.act4(self.fc2(self.act3(self.fc1(torch.flatten(x, 1)))))
        return x if pre_logits else self.fc3(x)

    def reset_classifier(self, num_classes: int, global_pool: Any = None) -> None:
        """A new fc3 (identity for 0); ``global_pool`` "flatten" or "" (the unflattened map: ``num_classes`` 0)."""
        pool = self.global_pool if global_pool is None else global_pool
        if pool not in ("flatten", ""):
            raise ValueError(f"LeNet5 supports global_pool 'flatten' or '' (none), got {pool!r}")
        if pool == "" and num_classes > 0:
            raise ValueError(f"global_pool='' leaves the (B, 16, 5, 5) map unflattened, which a classifier of "
                             f"{num_classes} classes cannot read: use num_classes=0 with it")
        self.global_pool = pool
        super().reset_classifier(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class _BasicBlock(nn.Module):
    """CIFAR ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus ``self.shortcut(x)``, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _BasicBlockA(_BasicBlock):
    """Basic block with the parameter-free option-A shortcut (He et al. 2016, Sec. 4.2)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(cin, cout, stride)
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x


class CifarResNet(_Classifier, nn.Module):
    """ResNet-(6n+2) for CIFAR: 16/32/64 channels, n basic blocks per stage (n=5: ResNet-32, 0.46 M)."""

    def __init__(self, depth: int = 32, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.num_classes, self.num_features = num_classes, 64
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers: List[nn.Module] = []
        cin = 16
        for i, width in enumerate((16, 32, 64)):
            blocks = [_BasicBlockA(cin if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            layers.append(nn.Sequential(*blocks))
            cin = width
        self.layer1, self.layer2, self.layer3 = layers
        self.fc: nn.Module = nn.Linear(64, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = {"first_conv": "conv1", "classifier": "fc"}
        self.feature_info = [{"num_chs": 16, "reduction": 1, "module": "bn1"},
                             {"num_chs": 16, "reduction": 1, "module": "layer1"},
                             {"num_chs": 32, "reduction": 2, "module": "layer2"},
                             {"num_chs": 64, "reduction": 4, "module": "layer3"}]
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def _stem(self, x: Tensor) -> Tensor:
        return F.relu(self.bn1(self.conv1(x)))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.layer3(self.layer2(self.layer1(self._stem(x))))

    def forward_intermediates(self, x: Tensor, indices: Any = None, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False) -> Any:
        """timm's ``forward_intermediates``: the maps of ``feature_info`` (stem, layer1..3) selected by
        ``indices`` (all by default), and the final features unless ``intermediates_only``."""
        from zoo.intermediates import run_stages

        x, maps = run_stages([self._stem, self.layer1, self.layer2, self.layer3], x, indices, output_fmt, stop_early,
                             intermediates_only)
        return maps if intermediates_only else (x, maps)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class _WideBlock(nn.Module):
    """Pre-activation wide basic block (Zagoruyko & Komodakis 2016) with a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if (cin != cout or stride != 1) else None

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        short = x if self.shortcut is None else self.shortcut(o)
        y = self.conv1(o)
        y = F.relu(self.bn2(y))
        if self.drop_rate > 0:
            y = F.dropout(y, self.drop_rate, self.training)
        return self.conv2(y) + short


class WideResNet(_Classifier, nn.Module):
    """WRN-depth-k for CIFAR (depth = 6n+4): widths 16k/32k/64k; WRN-28-10 has 36.5 M parameters."""

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 100, in_chans: int = 3,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4 (16, 22, 28, 40), got {depth}")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes, self.num_features = num_classes, widths[-1]
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        cin = 16
        groups: List[nn.Module] = []
        for i, width in enumerate(widths):
            blocks = [_WideBlock(cin if j == 0 else width, width, (1 if i == 0 else 2) if j == 0 else 1, drop_rate)
                      for j in range(n)]
            groups.append(nn.Sequential(*blocks))
            cin = width
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(widths[-1])
        self.fc: nn.Module = nn.Linear(widths[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = {"first_conv": "conv1", "classifier": "fc"}
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class _BasicBlockB(_BasicBlock):
    """Basic block with a 1x1 projection shortcut (batch-normalised) when the shape changes (option B)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(cin, cout, stride)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())


class CifarResNet34(_Classifier, nn.Module):
    """ResNet-34 for 32 x 32 inputs: a 3x3 stem of 64 channels (no max-pool), basic blocks (3, 4, 6, 3) at
    64/128/256/512 channels with projection shortcuts, global average pooling; 21.3 M parameters."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes, self.num_features = num_classes, 512
        self.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages: List[nn.Module] = []
        cin = 64
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            stages.append(nn.Sequential(*[_BasicBlockB(cin if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1)
                                          for j in range(blocks)]))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc: nn.Module = nn.Linear(512, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = {"first_conv": "conv1", "classifier": "fc"}

    def forward_features(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class CifarVGG16(_Classifier, nn.Module):
    """VGG-16 with batch norm for 32 x 32 inputs: 13 3x3 convolutions (64..512 channels), five 2x2 max-pools
    down to 1 x 1, and one linear classifier on the 512 features; 14.7 M parameters."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes, self.num_features = num_classes, 512
        layers: List[nn.Module] = []
        cin = in_chans
        for item in VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, padding=1, bias=False), nn.BatchNorm2d(int(item)),
                           nn.ReLU(inplace=True)]
                cin = int(item)
        self.features = nn.Sequential(*layers)
        self.fc: nn.Module = nn.Linear(512, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = {"first_conv": "features.0", "classifier": "fc"}

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (32, 32):
            raise ValueError(f"CIFAR VGG-16 expects 32 x 32 inputs, got {tuple(x.shape[-2:])}")
        return self.fc(torch.flatten(self.features(x), 1))


CIFAR_BACKBONES: Dict[str, Callable[..., nn.Module]] = {
    "lenet5": lambda num_classes=10, in_chans=1, **kw: LeNet5(num_classes, in_chans, **kw),
    "resnet20": lambda num_classes=10, in_chans=3, **kw: CifarResNet(20, num_classes, in_chans, **kw),
    "resnet32": lambda num_classes=10, in_chans=3, **kw: CifarResNet(32, num_classes, in_chans, **kw),
    "resnet56": lambda num_classes=10, in_chans=3, **kw: CifarResNet(56, num_classes, in_chans, **kw),
    "wrn16_2": lambda num_classes=100, in_chans=3, **kw: WideResNet(16, 2, num_classes, in_chans, **kw),
    "wrn28_10": lambda num_classes=100, in_chans=3, **kw: WideResNet(28, 10, num_classes, in_chans, **kw),
    "wrn28_10_cifar10": lambda num_classes=10, in_chans=3, **kw: WideResNet(28, 10, num_classes, in_chans, **kw),
    "resnet34_cifar": lambda num_classes=10, in_chans=3, **kw: CifarResNet34(num_classes, in_chans, **kw),
    "vgg16_cifar": lambda num_classes=10, in_chans=3, **kw: CifarVGG16(num_classes, in_chans, **kw),
}
"""Plugin-provided backbones (names chosen not to clash with timm's)."""


def is_timm_model(name: str) -> bool:
    """Whether ``name`` is one of timm's own models (``arch`` or ``arch.tag``; not a zoo name registered in timm)."""
    import timm

    from zoo.timm_compat import is_zoo_name

    return bool(timm.is_model(name)) and not is_zoo_name(name)


def is_backbone(name: str) -> bool:
    """Whether ``name`` is a plugin backbone or a timm model."""
    return name in CIFAR_BACKBONES or is_timm_model(name)


def build_backbone(name: str, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any) -> nn.Module:
    """A dense backbone: one of :data:`CIFAR_BACKBONES` or any timm model (``pretrained=False``)."""
    opts = dict(kwargs)
    if num_classes is not None:
        opts["num_classes"] = num_classes
    if in_chans is not None:
        opts["in_chans"] = in_chans
    if name in CIFAR_BACKBONES:
        return CIFAR_BACKBONES[name](**opts)
    import timm

    if not is_timm_model(name):
        raise KeyError(f"unknown backbone {name!r}: expected a timm model or one of {sorted(CIFAR_BACKBONES)}")
    opts.setdefault("pretrained", False)
    return timm.create_model(name, **opts)
