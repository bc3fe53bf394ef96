"""Lipschitz margin training, certification and attacks (dissertation 7.5, Eq. 7.5; 7.7.2).

For an ``L``-Lipschitz network ``f`` (L2), the prediction at ``x`` cannot change within radius
``M_f(x) / (sqrt(2) L)``, where ``M_f(x) = max(0, f(x)_c - max_{i != c} f(x)_i)`` (Eq. 7.5): a
perturbation ``d`` moves the output by at most ``L ||d||`` and any logit difference by at most
``sqrt(2) L ||d||``.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS_CIFAR = 36 / 255


def multiclass_hinge_loss(logits: Tensor, target: Tensor, margin: float) -> Tensor:
    """``mean_b (1/C) sum_{i != y} max(0, margin - (f_y - f_i))`` (multi-class hinge with margin ``eps_0``).

    Args:
        logits: ``(B, C)``. target: ``(B,)`` class ids. margin: ``eps_0 > 0`` in logit units.
    """
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, C) and target (B,), got {tuple(logits.shape)} and {tuple(target.shape)}")
    true = logits.gather(1, target[:, None])
    hinge = (margin - true + logits).clamp_min(0)
    hinge = hinge.scatter(1, target[:, None], 0.0)
    return hinge.sum(1).mean() / logits.shape[1]


def output_margin(logits: Tensor, target: Tensor) -> Tensor:
    """``f_y - max_{i != y} f_i`` per sample ``(B,)`` (negative when misclassified)."""
    true = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    return true - others.max(1).values


def certified_radius(logits: Tensor, target: Tensor, lipschitz: float = 1.0) -> Tensor:
    """``M_f(x) / (sqrt(2) L)`` per sample (0 for misclassified samples), in input L2 units."""
    if lipschitz <= 0:
        raise ValueError(f"lipschitz must be > 0, got {lipschitz}")
    return output_margin(logits, target).clamp_min(0) / (math.sqrt(2) * lipschitz)


def pgd_l2(model: nn.Module, x: Tensor, target: Tensor, eps: Union[float, Tensor], steps: int = 10,
           step_size: Union[float, Tensor, None] = None, random_start: bool = False, clamp: bool = True,
           loss: str = "margin") -> Tensor:
    """L2 projected gradient ascent; returns ``x + d`` with ``||d||_2 <= eps``.

    Args:
        x: ``(B, ...)`` inputs in ``[0, 1]``; eps: radius (scalar or ``(B,)``); step_size default ``2.5 eps / steps``.
        clamp: keep ``x + d`` in ``[0, 1]``.
        loss: ``margin`` (maximise ``max_{i != y} f_i - f_y``, Carlini-Wagner style) or ``ce`` (cross-entropy).
    """
    if loss not in ("margin", "ce"):
        raise ValueError(f"loss must be 'margin' or 'ce', got {loss!r}")
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device).reshape(-1)
    eps_t = eps_t.expand(x.shape[0]) if eps_t.numel() == 1 else eps_t
    shape = (-1,) + (1,) * (x.dim() - 1)
    alpha = 2.5 * eps_t / steps if step_size is None else torch.as_tensor(step_size, dtype=x.dtype).expand(x.shape[0])
    delta = torch.zeros_like(x)
    if random_start:
        delta = torch.randn_like(x)
        delta = delta / delta.flatten(1).norm(dim=1).view(shape) * eps_t.view(shape) * torch.rand(x.shape[0], device=x.device).view(shape)
    for _ in range(steps):
        delta.requires_grad_(True)
        out = model(x + delta)
        objective = F.cross_entropy(out, target) if loss == "ce" else -output_margin(out, target).sum()
        (grad,) = torch.autograd.grad(objective, delta)
        with torch.no_grad():
            g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
            delta = delta + alpha.view(shape) * g
            norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            delta = delta * (eps_t / norm).clamp(max=1.0).view(shape)
            if clamp:
                delta = (x + delta).clamp(0, 1) - x
        delta = delta.detach()
    return (x + delta).detach()


@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def model_lipschitz_bound(model: nn.Module) -> float:
    """The model's own L2 Lipschitz bound (its ``lipschitz_bound``, e.g. an adapted input mix's largest singular
    value); 1.0 for a model that declares none (built of 1-Lipschitz layers only)."""
    bound = getattr(model, "lipschitz_bound", 1.0)
    return float(bound() if callable(bound) else bound)


def evaluate_robustness(model: nn.Module, x: Tensor, target: Tensor, eps: float = EPS_CIFAR,
                        lipschitz: Optional[float] = None, pgd_steps: int = 10,
                        batch_size: int = 256) -> Dict[str, float]:
    """Clean, certified (radius > eps) and L2-PGD accuracy in percent, plus mean certified radius.

    ``model`` is put in eval mode. ``x``: ``(N, C, H, W)`` in ``[0, 1]``; ``target``: ``(N,)``. ``lipschitz``: the
    bound the radii divide by (default: :func:`model_lipschitz_bound`, the model's own).
    """
    model.eval()
    logits = _logits(model, x, batch_size)
    correct = logits.argmax(1) == target
    radius = certified_radius(logits, target, model_lipschitz_bound(model) if lipschitz is None else lipschitz)
    adv_correct = []
    for i in range(0, x.shape[0], batch_size):
        xa = pgd_l2(model, x[i:i + batch_size], target[i:i + batch_size], eps, steps=pgd_steps)
        with torch.no_grad():
            adv_correct.append(model(xa).argmax(1) == target[i:i + batch_size])
    adv = torch.cat(adv_correct) & correct
    n = float(x.shape[0])
    return {
        "clean_acc": 100.0 * float(correct.sum()) / n,
        "certified_acc": 100.0 * float((radius > eps).sum()) / n,
        "pgd_acc": 100.0 * float(adv.sum()) / n,
        "mean_certified_radius": float(radius.mean()),
        "eps": float(eps),
        "n": int(n),
    }


def jacobian_spectral_norm(model: nn.Module, x: Tensor, iters: int = 50) -> float:
    """Largest singular value of the Jacobian of ``model`` at a single input ``x`` ``(1, ...)`` by power iteration."""
    from torch.func import jvp, vjp

    v = torch.randn_like(x)
    v = v / v.norm()
    sigma = 0.0
    out, pullback = vjp(model, x)
    for _ in range(iters):
        _, jv = jvp(model, (x,), (v,))
        (jtjv,) = pullback(jv)
        sigma = float(jv.detach().norm())
        v = (jtjv / jtjv.norm().clamp_min(1e-30)).detach()
    return sigma
