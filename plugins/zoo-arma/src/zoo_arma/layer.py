"""``ARMAConv2d``: a convolution (moving average) followed by a per-channel AR deconvolution (Def. 6.1/6.5)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .ar import DEFAULT_MARGIN, ar_fits, ar_solve, filter_2d, parameters_from_coefficients, transfer_function

__all__ = ["ARMAConv2d"]

_Size = Union[int, Tuple[int, int]]


def _pair(v: _Size, name: str) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")


class ARMAConv2d(nn.Conv2d):
    """ARMA layer ``A_t * Y_t = sum_s W_ts * X_s + b_t`` (eq. 6.2 with a bias in the MA part).

    It *is* an ``nn.Conv2d`` (same ``weight``/``bias`` and hyper-parameters, so timm helpers and
    ``isinstance`` checks keep working) plus ``ar_params`` of shape ``(out_channels, 2, Q, 2)``, the
    unconstrained re-parameterization of Q separable length-3 factors per axis (Theorem 6.7, see
    :mod:`zoo_arma.ar`). The AR kernel is ``(2Q+1) x (2Q+1)``.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias, padding_mode: as ``nn.Conv2d``
            (the moving-average part); ``dilation > 1`` gives the dilated ARMA layer of Fig. 6.2d.
        padding: MA padding; default ``dilation * (kernel_size - 1) // 2`` keeps the size for odd kernels.
        ar_kernel_size: odd size ``2Q+1`` of the AR kernel (1 = no AR part, a plain convolution).
        ar_order: Q, the number of length-3 factors per axis; if given it must match ``ar_kernel_size``.
        ar_padding: zero border used only for the AR solve. The solve is circular: with 0 an output pixel
            near one edge also feeds from the opposite edge (the impulse response wraps around). Pad by a
            few times ``1 / (1 - a)`` pixels where wrap-around is unwanted; it costs a larger FFT.
        ar_init: 0 starts at the identity (the layer equals the plain convolution exactly); ``a > 0`` draws
            each factor's ``f_-1 + f_1`` uniformly in ``[-a, 0]`` with ``f_-1 = f_1`` (a low-pass AR filter
            with DC gain up to ``1 / (1 - a)`` per factor and axis), as in the simulations of 6.5.1.
        ar_margin: ``1 - rho``; every factor satisfies ``|f_-1| + |f_1| <= 1 - ar_margin``.

    Small maps: the AR part acts only where the ``(2Q+1) x (2Q+1)`` kernel fits the circular solve grid,
    ``min(H', W') + 2 * ar_padding >= 2Q+1`` (:meth:`ar_fits`). On a smaller map the layer returns the moving
    average alone, as the official code does on maps smaller than ``2Q+1`` (a circular solve there would use an
    aliased filter, not ``A``); ``ar_params`` then gets an exact zero gradient from that call.

    Shapes: input ``(B, in_channels, H, W)`` -> output ``(B, out_channels, H', W')`` as ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Size = 3,
        ar_kernel_size: int = 3,
        ar_order: Optional[int] = None,
        stride: _Size = 1,
        padding: Optional[_Size] = None,
        dilation: _Size = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        ar_padding: int = 0,
        ar_init: float = 0.0,
        ar_margin: float = DEFAULT_MARGIN,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        ks, dil = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation")
        if padding is None:
            padding = (dil[0] * (ks[0] - 1) // 2, dil[1] * (ks[1] - 1) // 2)
        super().__init__(in_channels, out_channels, ks, stride, padding, dil, groups, bias, padding_mode, device, dtype)
        if not isinstance(ar_kernel_size, int) or ar_kernel_size < 1 or ar_kernel_size % 2 == 0:
            raise ValueError(f"ar_kernel_size must be an odd positive int (2Q+1), got {ar_kernel_size!r}")
        q = (ar_kernel_size - 1) // 2
        if ar_order is not None and ar_order != q:
            raise ValueError(f"ar_order={ar_order} does not match ar_kernel_size={ar_kernel_size} (expected Q={q})")
        if ar_padding < 0:
            raise ValueError(f"ar_padding must be >= 0, got {ar_padding}")
        if not 0.0 <= ar_init < 1.0 - ar_margin:
            raise ValueError(f"ar_init must be in [0, {1.0 - ar_margin}), got {ar_init}")
        self.ar_kernel_size, self.ar_order = ar_kernel_size, q
        self.ar_padding, self.ar_init, self.ar_margin = int(ar_padding), float(ar_init), float(ar_margin)
        self.ar_params = nn.Parameter(torch.zeros(out_channels, 2, q, 2, device=device, dtype=dtype))
        self.reset_ar_parameters()

    def reset_ar_parameters(self) -> None:
        """Identity AR filter (``ar_init == 0``) or a random low-pass one (see the class docstring)."""
        with torch.no_grad():
            if self.ar_init == 0.0 or self.ar_order == 0:
                self.ar_params.zero_()
                return
            s = -self.ar_init * torch.rand(self.ar_params.shape[:-1], device=self.ar_params.device)
            self.ar_params.copy_(parameters_from_coefficients(s / 2, s / 2, self.ar_margin).to(self.ar_params.dtype))

    def set_ar_coefficients(self, minus: Tensor, plus: Tensor) -> None:
        """Set the taps ``f_-1, f_1`` (``(out_channels, 2, Q)``, axis 0 = rows) through the re-parameterization."""
        expected = tuple(self.ar_params.shape[:-1])
        if tuple(minus.shape) != expected or tuple(plus.shape) != expected:
            raise ValueError(f"expected taps of shape {expected}, got {tuple(minus.shape)} and {tuple(plus.shape)}")
        with torch.no_grad():
            self.ar_params.copy_(parameters_from_coefficients(minus, plus, self.ar_margin))

    def ar_kernel(self) -> Tensor:
        """The AR kernel ``A`` as ``(out_channels, 2Q+1, 2Q+1)`` correlation taps (centre tap 1)."""
        return filter_2d(self.ar_params, self.ar_margin)

    def ar_transfer(self, size: Tuple[int, int]) -> Tensor:
        """``A_hat`` on the ``rfft2`` grid of ``size = (H, W)``: complex ``(out_channels, H, W//2+1)``."""
        return transfer_function(self.ar_params, size, self.ar_margin)

    def ar_fits(self, size: Tuple[int, int]) -> bool:
        """Whether the AR part acts on a moving-average output of ``size = (H', W')`` (see the class docstring)."""
        return ar_fits(size, self.ar_order, self.ar_padding)

    def moving_average(self, x: Tensor) -> Tensor:
        """The plain convolution part (eq. 6.5a): ``(B, S, H, W) -> (B, T, H', W')``."""
        return super().forward(x)

    def forward(self, x: Tensor) -> Tensor:
        return ar_solve(self.moving_average(x), self.ar_params, self.ar_margin, self.ar_padding)

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", ar_kernel_size={self.ar_kernel_size}"
        if self.ar_padding:
            s += f", ar_padding={self.ar_padding}"
        return s

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, ar_kernel_size: int = 3, **kwargs) -> "ARMAConv2d":
        """An ARMA layer with ``conv``'s hyper-parameters and a copy of its weights; AR = identity."""
        if type(conv) is not nn.Conv2d or isinstance(conv.padding, str):
            raise TypeError(f"expected a plain nn.Conv2d with numeric padding, got {type(conv).__name__} (padding={conv.padding!r})")
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, ar_kernel_size=ar_kernel_size,
            stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None, padding_mode=conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype, **kwargs,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        layer.train(conv.training)
        return layer
