"""Frame metrics of Sec. 4.7.3: MSE, PSNR, SSIM per frame and averaged; LPIPS when available.

Frames are (B, T, C, H, W) in [0, 1]. Per-frame values are averaged over the batch -> (T,).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F


def _check_pair(pred: torch.Tensor, truth: torch.Tensor) -> None:
    if pred.shape != truth.shape or pred.dim() != 5:
        raise ValueError(
            f"expected prediction and truth of the same shape (B, T, C, H, W), got {tuple(pred.shape)} "
            f"and {tuple(truth.shape)}"
        )


def mse_per_frame(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel, per frame (T,), averaged over the batch."""
    _check_pair(pred, truth)
    return ((pred - truth) ** 2).mean(dim=(2, 3, 4)).mean(dim=0)


def psnr_per_frame(pred: torch.Tensor, truth: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per frame (T,): 10 log10(range^2 / MSE) of each sample's frame, averaged over the batch."""
    _check_pair(pred, truth)
    mse = ((pred - truth) ** 2).mean(dim=(2, 3, 4)).clamp_min(1e-12)
    return (10 * torch.log10(data_range**2 / mse)).mean(dim=0)


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, valid region: (N, 1, H, W) -> (N, 1, H - k + 1, W - k + 1)."""
    return F.conv2d(F.conv2d(x, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))


def ssim_per_frame(
    pred: torch.Tensor, truth: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
    chunk: int = 256,
) -> torch.Tensor:
    """SSIM (Wang et al. 2004; Gaussian 11x11 window, sigma 1.5, K1=0.01, K2=0.03, valid region) per frame (T,).

    Channels are treated independently and averaged; computed in float64, ``chunk`` images at a time."""
    _check_pair(pred, truth)
    b, t, c, h, w = pred.shape
    if h < window or w < window:
        raise ValueError(f"SSIM needs frames of at least {window}x{window}, got {h}x{w}")
    xs = pred.reshape(b * t * c, 1, h, w)
    ys = truth.reshape(b * t * c, 1, h, w)
    g = _gaussian_1d(window, sigma, torch.float64, pred.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    means = []
    for i in range(0, xs.shape[0], chunk):
        x, y = xs[i : i + chunk].double(), ys[i : i + chunk].double()
        mu_x, mu_y = _blur(x, g), _blur(y, g)
        sxx = _blur(x * x, g) - mu_x**2
        syy = _blur(y * y, g) - mu_y**2
        sxy = _blur(x * y, g) - mu_x * mu_y
        s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
        means.append(s.mean(dim=(1, 2, 3)))
    return torch.cat(means).view(b, t, c).mean(dim=2).mean(dim=0).to(pred.dtype)


class LPIPSUnavailable(RuntimeError):
    """Raised when LPIPS cannot be computed (package or pretrained weights missing)."""


def lpips_per_frame(pred: torch.Tensor, truth: torch.Tensor, net: str = "alex") -> torch.Tensor:
    """LPIPS (Zhang et al. 2018) per frame (T,) with the ``lpips`` package and its pretrained weights.

    Raises :class:`LPIPSUnavailable` saying what is missing when the package or weights are absent."""
    _check_pair(pred, truth)
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError as err:
        raise LPIPSUnavailable(
            "LPIPS needs the 'lpips' package and its pretrained AlexNet/VGG weights, which are not installed "
            "here (pip install lpips, with internet access for the backbone weights); LPIPS was not computed"
        ) from err
    try:
        metric = lpips.LPIPS(net=net, verbose=False)
    except Exception as err:  # weights download failed
        raise LPIPSUnavailable(f"LPIPS weights for net={net!r} could not be loaded: {err}") from err
    b, t, c, h, w = pred.shape
    x = pred.reshape(b * t, c, h, w).expand(-1, 3, -1, -1) * 2 - 1
    y = truth.reshape(b * t, c, h, w).expand(-1, 3, -1, -1) * 2 - 1
    with torch.no_grad():
        d = metric(x, y).view(b, t)
    return d.mean(dim=0)


def evaluate(pred: torch.Tensor, truth: torch.Tensor, with_lpips: bool = False) -> Dict[str, object]:
    """Per-frame lists and averages of MSE, PSNR, SSIM (and LPIPS, or the reason it is missing)."""
    out: Dict[str, object] = {}
    for name, fn in (("mse", mse_per_frame), ("psnr", psnr_per_frame), ("ssim", ssim_per_frame)):
        v = fn(pred, truth)
        out[name] = float(v.mean())
        out[f"{name}_per_frame"] = [float(a) for a in v]
    if with_lpips:
        try:
            v = lpips_per_frame(pred, truth)
            out["lpips"] = float(v.mean())
            out["lpips_per_frame"] = [float(a) for a in v]
        except LPIPSUnavailable as err:
            out["lpips"] = None
            out["lpips_unavailable"] = str(err)
    return out


def psnr_from_mse(mse: float, data_range: float = 1.0) -> Optional[float]:
    """10 log10(range^2 / mse); None for mse <= 0."""
    return 10 * math.log10(data_range**2 / mse) if mse > 0 else None
