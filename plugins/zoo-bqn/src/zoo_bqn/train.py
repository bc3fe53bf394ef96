"""A small training loop shared by BQNs and the baselines: Adam, lr decayed by 0.98 per epoch, batch 100,
random shifts within 2 pixels (section 5.4.1), plus batched prediction."""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional

import torch
from torch import nn

from zoo_bqn.data import random_shift

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def fit(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float = 1e-2,
        decay: float = 0.98, batch_size: int = 100, max_shift: int = 2, seed: int = 0,
        after_step: Optional[Callable[[nn.Module], None]] = None,
        log: Optional[Callable[[str], None]] = None) -> Dict[str, float]:
    """Minimise ``loss_fn(model, xb, yb)`` over ``epochs`` passes; returns {"seconds", "steps", "last_loss"}."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=decay)
    model.train()
    start, steps, last = time.perf_counter(), 0, float("nan")
    for epoch in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for i in range(0, x.shape[0], batch_size):
            idx = perm[i: i + batch_size]
            xb = random_shift(x[idx], max_shift, gen)
            loss = loss_fn(model, xb, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += float(loss.detach()) * idx.numel()
            steps += 1
        sched.step()
        last = total / x.shape[0]
        if log is not None:
            log(f"  epoch {epoch + 1}/{epochs}: loss {last:.4f} ({time.perf_counter() - start:.0f} s)")
    model.eval()
    return {"seconds": time.perf_counter() - start, "steps": float(steps), "last_loss": last}


@torch.no_grad()
def predict(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Concatenate ``fn`` (log-probabilities) over batches of ``x``."""
    return torch.cat([fn(x[i: i + batch_size]) for i in range(0, x.shape[0], batch_size)])
