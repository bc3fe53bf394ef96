"""Residual Flow with SC-Fac orthogonal convolutions (dissertation 7.7.3, Eq. 7.7-7.13, Table 7.7).

A residual block ``F(x) = x + g(x)`` is invertible when ``Lip(g) < 1`` (i-ResNet). Here ``g`` is a chain of
SC-Fac convolutions (orthogonal, isometric or co-isometric with circular padding, so 1-Lipschitz) and
LipSwish activations (1-Lipschitz), multiplied by a constant ``c < 1``: ``Lip(g) <= c`` by construction,
with no spectral normalization.

* inverse: Banach fixed-point iteration ``x_{k+1} = y - g(x_k)``, ``x_0 = y`` (Eq. 7.9); it raises
  :class:`FixedPointError` when the tolerance is not met within the iteration cap.
* log-determinant ``ln det(I + J_g) = sum_k (-1)^{k+1} tr(J_g^k) / k`` (Eq. 7.12), estimated without bias by
  the Russian-roulette estimator with Hutchinson probes (Eq. 7.13); :meth:`ResidualBlock.exact_logdet`
  computes it from the dense Jacobian (small inputs, tests).
* :class:`ResidualFlow`: logit pre-processing, squeeze, (ActNorm, residual block) x n, factor-out, ...,
  standard-normal base; log-likelihoods in nats, bits per dimension with uniform dequantization of 8-bit pixels.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo_scfac.layers import OrthoConv2d

LOG_2PI = math.log(2 * math.pi)


class FixedPointError(RuntimeError):
    """The fixed-point inverse of a residual block did not reach its tolerance within the iteration cap."""


class LipSwish(nn.Module):
    """``x * sigmoid(beta x) / 1.1`` with learnable ``beta = softplus(b) > 0``; 1-Lipschitz (Residual Flow)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.full((1, channels, 1, 1), 0.5))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        return x * torch.sigmoid(F.softplus(self.b) * x) / 1.1


class ActNorm(nn.Module):
    """Per-channel affine map ``y = (x + bias) * exp(log_scale)`` with exact log-determinant ``H W sum(log_scale)``.

    The first forward pass in training mode sets ``bias`` and ``log_scale`` so that its batch has zero mean and unit
    variance per channel (Glow's data-dependent initialization); the flag is a buffer, saved with the weights.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(B, C, H, W) -> (y, logdet (B,))``."""
        if self.training and not self.initialized:
            with torch.no_grad():
                flat = x.detach().transpose(0, 1).flatten(1)
                self.bias.copy_(-flat.mean(1).view_as(self.bias))
                self.log_scale.copy_(-flat.std(1, correction=0).clamp_min(1e-3).log().view_as(self.log_scale))
                self.initialized.fill_(True)
        logdet = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * self.log_scale.exp(), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        return y * (-self.log_scale).exp() - self.bias


class ResidualBlock(nn.Module):
    """``F(x) = x + g(x)``, ``g = c * conv_3 . LipSwish . conv_2 . LipSwish . conv_1 . LipSwish``, ``Lip(g) <= c``.

    ``conv_1: C -> hidden (k x k)``, ``conv_2: hidden -> hidden (1 x 1)``, ``conv_3: hidden -> C (k x k)``; all SC-Fac
    with circular padding, so each has spectral norm exactly 1. Input ``(B, C, H, W)``.

    Args:
        channels: ``C``.
        hidden: width of the inner convolutions.
        kernel_size: ``k`` of the outer convolutions (odd).
        coeff: ``c`` in (0, 1), the Lipschitz bound of ``g`` (smaller: faster inverse and series, less expressive).
        n_exact: power-series terms always evaluated (weight 1) by the estimator.
        p_stop: parameter of the geometric number of extra (Russian-roulette) terms, ``P(extra >= j) = (1 - p)^j``.
        atol: fixed-point tolerance (max-abs change between iterates; floored at the dtype's rounding level).
        max_iter: fixed-point iteration cap.
        order: SC-Fac composition order of the convolutions (:class:`zoo_scfac.layers.OrthoConv2d`).
    """

    def __init__(self, channels: int, hidden: int, kernel_size: int = 3, coeff: float = 0.9, n_exact: int = 2,
                 p_stop: float = 0.5, atol: float = 1e-6, max_iter: int = 200, order: str = "width-first") -> None:
        super().__init__()
        if not 0.0 < coeff < 1.0:
            raise ValueError(f"coeff must lie in (0, 1) for an invertible block, got {coeff}")
        if not 0.0 < p_stop < 1.0:
            raise ValueError(f"p_stop must lie in (0, 1), got {p_stop}")
        if n_exact < 1 or max_iter < 1:
            raise ValueError(f"n_exact and max_iter must be >= 1, got {n_exact} and {max_iter}")
        self.coeff, self.n_exact, self.p_stop = coeff, n_exact, p_stop
        self.atol, self.max_iter = atol, max_iter
        self.net = nn.Sequential(
            LipSwish(channels), OrthoConv2d(channels, hidden, kernel_size, init="uniform", order=order),
            LipSwish(hidden), OrthoConv2d(hidden, hidden, 1, init="uniform", order=order),
            LipSwish(hidden), OrthoConv2d(hidden, channels, kernel_size, init="uniform", order=order),
        )

    def g(self, x: Tensor) -> Tensor:
        """The residual branch ``(B, C, H, W) -> (B, C, H, W)``, ``Lip(g) <= coeff``."""
        return self.coeff * self.net(x)

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """``x`` ``(B, C, H, W)`` -> ``(y = x + g(x), logdet (B,))``, logdet the unbiased estimate of Eq. 7.13.

        Differentiable (in the parameters and ``x``) when autograd is enabled; detached otherwise.
        """
        track = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            gx = self.g(xg)
            logdet = self._roulette_logdet(xg, gx, track, generator)
        y = x + gx
        if not track:
            return y.detach(), logdet.detach()
        return y, logdet

    def _roulette_logdet(self, x: Tensor, gx: Tensor, create_graph: bool,
                         generator: Optional[torch.Generator]) -> Tensor:
        """Eq. 7.13: one Gaussian probe per sample, one ``n = n_exact + Geometric(p_stop)`` per call (shared by the
        batch, so a step costs ``n`` vector-Jacobian products); unbiased for every sample."""
        v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        u = 1.0 - torch.rand((), generator=generator, dtype=torch.float64).item()  # in (0, 1]
        n = self.n_exact + int(math.floor(math.log(u) / math.log1p(-self.p_stop)))  # P(n - n_exact >= j) = (1-p)^j
        w, total = v, x.new_zeros(x.shape[0])
        for k in range(1, n + 1):
            (w,) = torch.autograd.grad(gx, x, w, create_graph=create_graph, retain_graph=True)  # w = v^T J^k
            survive = 1.0 if k <= self.n_exact else (1.0 - self.p_stop) ** (k - self.n_exact)  # P(n >= k)
            total = total + ((-1.0) ** (k + 1) / (k * survive)) * (w * v).flatten(1).sum(1)
        return total

    def exact_logdet(self, x: Tensor) -> Tensor:
        """``ln |det(I + J_g(x))|`` per sample from the dense Jacobian (``D = C H W`` must be small): ``(B,)``."""
        rows = []
        for xi in x.detach():
            fn = lambda flat: (flat + self.g(flat.view(1, *xi.shape)).flatten())  # noqa: E731
            jac = torch.autograd.functional.jacobian(fn, xi.flatten())
            rows.append(torch.linalg.slogdet(jac)[1])
        return torch.stack(rows)

    @torch.no_grad()
    def inverse(self, y: Tensor) -> Tensor:
        """Solve ``x + g(x) = y`` by ``x_{k+1} = y - g(x_k)`` (Eq. 7.9); raises :class:`FixedPointError`.

        Stops when ``max |x_{k+1} - x_k| <= max(atol, 8 eps max |y|)`` (``eps`` of ``y``'s dtype: the rounding floor).
        """
        tol = max(self.atol, 8 * torch.finfo(y.dtype).eps * y.abs().max().item())
        x, change = y, math.inf
        for _ in range(self.max_iter):
            nxt = y - self.g(x)
            change = (nxt - x).abs().max().item()
            x = nxt
            if change <= tol:
                return x
        raise FixedPointError(f"fixed-point inverse did not converge: max |x_k+1 - x_k| = {change:.3g} > tolerance "
                              f"{tol:.3g} after max_iter={self.max_iter} iterations (Lip(g) <= {self.coeff})")


def squeeze(x: Tensor) -> Tensor:
    """Space-to-depth ``(B, C, H, W) -> (B, 4C, H/2, W/2)`` (a permutation: log-determinant 0)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Inverse of :func:`squeeze`: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    b, c, h, w = x.shape
    return x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)


class ResidualFlow(nn.Module):
    """Multi-scale Residual Flow for ``(B, C, H, W)`` images in [0, 1] with a standard-normal base.

    Pre-processing ``s = logit(a + (1 - 2a) x)`` (exact log-det), then for each scale ``i``: squeeze,
    ``blocks[i]`` x (ActNorm, :class:`ResidualBlock`), and (except after the last scale) factor out half of the
    channels to the base. ``forward(x)`` returns the flat latent ``z (B, D)`` and ``ln |det dz/dx| (B,)``.

    Args:
        in_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by ``2^len(blocks)``.
        blocks: residual blocks per scale.
        hidden: inner width of every residual block.
        kernel_size, coeff, n_exact, p_stop, atol, max_iter, order: see :class:`ResidualBlock`.
        logit_alpha: ``a`` of the logit pre-processing.
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), blocks: Sequence[int] = (4, 4), hidden: int = 64,
                 kernel_size: int = 3, coeff: float = 0.9, n_exact: int = 2, p_stop: float = 0.5,
                 logit_alpha: float = 1e-6, atol: float = 1e-6, max_iter: int = 200, order: str = "width-first") -> None:
        super().__init__()
        c, h, w = (int(s) for s in in_shape)
        if not blocks or h % 2 ** len(blocks) or w % 2 ** len(blocks):
            raise ValueError(f"in_shape {tuple(in_shape)} must have H, W divisible by 2^{len(blocks)} (one squeeze per scale)")
        if not 0.0 <= logit_alpha < 0.5:
            raise ValueError(f"logit_alpha must lie in [0, 0.5), got {logit_alpha}")
        self.in_shape, self.logit_alpha = (c, h, w), logit_alpha
        self.scales = nn.ModuleList()
        self.shapes: List[Tuple[int, int, int]] = []  # shape entering each scale after its squeeze
        for i, n in enumerate(blocks):
            c, h, w = 4 * c, h // 2, w // 2
            self.shapes.append((c, h, w))
            layers = nn.ModuleList()
            for _ in range(n):
                layers.append(ActNorm(c))
                layers.append(ResidualBlock(c, hidden, kernel_size, coeff, n_exact, p_stop, atol, max_iter, order))
            self.scales.append(layers)
            if i < len(blocks) - 1:
                c //= 2
        self.dim = in_shape[0] * in_shape[1] * in_shape[2]

    def adapt_pretrained_in_chans(self, state: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """The zoo's ``in_chans`` hook (docs/plugins.md), called for weights saved for another channel count:
        refused with the reason (``ValueError``). A flow is a bijection of its input space, so a density learned
        on C-channel images defines none on images of another channel count."""
        raise ValueError("a normalizing flow maps its input space onto itself, so its density cannot be moved to "
                         "another channel count; build it with pretrained=False to train a flow for the new channels")

    def _preprocess(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        a = self.logit_alpha
        p = a + (1 - 2 * a) * x
        s = torch.log(p) - torch.log1p(-p)
        logdet = (math.log(1 - 2 * a) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        return s, logdet

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """``x (B, C, H, W)`` in [0, 1] -> ``(z (B, D), logdet (B,))`` (logdet estimated, nats)."""
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"expected input (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        h, logdet = self._preprocess(x)
        zs = []
        for i, layers in enumerate(self.scales):
            h = squeeze(h)
            for layer in layers:
                h, ld = layer(h) if isinstance(layer, ActNorm) else layer(h, generator)
                logdet = logdet + ld
            if i < len(self.scales) - 1:
                half = h.shape[1] // 2
                zs.append(h[:, half:].flatten(1))
                h = h[:, :half]
        zs.append(h.flatten(1))
        return torch.cat(zs[::-1], 1), logdet

    @torch.no_grad()
    def inverse(self, z: Tensor) -> Tensor:
        """``z (B, D)`` -> ``x (B, C, H, W)`` in (0, 1); raises :class:`FixedPointError` if a block does not converge."""
        offset, h = 0, None
        for i in reversed(range(len(self.scales))):
            c, hh, ww = self.shapes[i]
            kept = c if i == len(self.scales) - 1 else c // 2
            part = z[:, offset: offset + kept * hh * ww].view(-1, kept, hh, ww)
            offset += kept * hh * ww
            h = part if h is None else torch.cat([h, part], 1)
            for layer in reversed(self.scales[i]):
                h = layer.inverse(h)
            h = unsqueeze(h)
        a = self.logit_alpha
        return (torch.sigmoid(h) - a) / (1 - 2 * a)

    def log_prob(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Log-density of ``x (B, C, H, W)`` in [0, 1]^D under the flow (Eq. 7.8), nats: ``(B,)``."""
        z, logdet = self(x, generator)
        return -0.5 * (z.pow(2) + LOG_2PI).sum(1) + logdet

    def bits_per_dim(self, pixels: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Bits per dimension of 8-bit images ``pixels (B, C, H, W)`` (values 0..255), uniform dequantization: ``(B,)``.

        ``-(ln p((pixels + u) / 256) - D ln 256) / (D ln 2)``, ``u ~ U[0, 1)^D``: an unbiased estimate of an upper
        bound on the discrete model's code length.
        """
        x = dequantize(pixels, generator)
        return -(self.log_prob(x, generator) - self.dim * math.log(256.0)) / (self.dim * math.log(2.0))

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in [0, 1] from ``z ~ N(0, temperature^2 I)``."""
        ref = next(self.parameters())
        z = torch.randn(n, self.dim, generator=generator, dtype=ref.dtype) * temperature
        return self.inverse(z.to(ref.device)).clamp(0.0, 1.0)


def held_out_bits_per_dim(model: ResidualFlow, pixels: Tensor, batch: int = 100, n_exact: int = 8,
                          seed: int = 1) -> Dict[str, float]:
    """Mean bits/dim of ``pixels (N, C, H, W)`` (8-bit values) and its standard error, in eval mode without
    gradients: batches of ``batch`` in order, one generator seeded ``seed`` for the dequantization noise and the
    log-det estimator, every block evaluating ``n_exact`` exact power-series terms (restored afterwards).

    The defaults are the estimator the registry's flow metrics were recorded with (scripts/demo_resflow_mnist.py).
    """
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    saved = [b.n_exact for b in blocks]
    for b in blocks:
        b.n_exact = n_exact
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    try:
        with torch.no_grad():
            bpd = torch.cat([model.bits_per_dim(pixels[i: i + batch], generator) for i in range(0, len(pixels), batch)])
    finally:
        for b, n in zip(blocks, saved):
            b.n_exact = n
    return {"bits_per_dim": bpd.mean().item(), "bits_per_dim_se": (bpd.std() / math.sqrt(len(bpd))).item(),
            "n": float(len(bpd))}


def dequantize(pixels: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """``(pixels + u) / 256`` with ``u ~ U[0, 1)``: 8-bit values (any shape) -> floats in [0, 1)."""
    u = torch.rand(pixels.shape, generator=generator, device=generator.device if generator else pixels.device)
    return (pixels.to(u.dtype) + u.to(pixels.device)) / 256.0
