"""``armaize(model)``: swap the square convolutions of a network for ARMA layers in place."""

from __future__ import annotations

from typing import Iterable, List, Tuple

from torch import nn

from .layer import ARMAConv2d

__all__ = ["armaize"]


def armaize(
    model: nn.Module,
    kernel_sizes: Iterable[int] = (3,),
    ar_kernel_size: int = 3,
    min_size: int = 1,
    **ar_kwargs,
) -> nn.Module:
    """Replace every plain ``nn.Conv2d`` with a ``k x k`` kernel (``k`` in ``kernel_sizes``) by an
    :class:`~zoo_arma.layer.ARMAConv2d` holding the same weights, bias and hyper-parameters, AR = identity.

    At initialisation the network computes exactly what it did before; the AR parameters then train.
    Subclasses of ``nn.Conv2d`` with their own ``forward`` (timm's ``Conv2dSame``, ``StdConv2d``) and
    convolutions with string padding are left alone. ``min_size`` skips layers with fewer output channels.

    Returns the same ``model`` object; ``model.armaized`` lists the names of the replaced layers.
    """
    sizes = {(k, k) for k in kernel_sizes}
    targets: List[Tuple[nn.Module, str, str, nn.Conv2d]] = []
    for parent_name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            if (
                type(child) is nn.Conv2d
                and tuple(child.kernel_size) in sizes
                and not isinstance(child.padding, str)
                and child.out_channels >= min_size
            ):
                full = f"{parent_name}.{child_name}" if parent_name else child_name
                targets.append((parent, child_name, full, child))
    for parent, child_name, _, conv in targets:
        setattr(parent, child_name, ARMAConv2d.from_conv(conv, ar_kernel_size=ar_kernel_size, **ar_kwargs))
    model.armaized = [full for _, _, full, _ in targets]
    return model
