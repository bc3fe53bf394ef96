"""Gradient checkpointing of a whole conv_einsum evaluation (Sec. 3.4.3).

With ``checkpoint=True`` no intermediate of the pairwise steps is kept for backward; the forward is
recomputed during backward instead (``torch.utils.checkpoint``, non-reentrant variant).
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint as tuc
from torch import Tensor

from .plan import Plan


def run_checkpointed(plan: Plan, operands: tuple[Tensor, ...]) -> Tensor:
    """Evaluate ``plan`` keeping only its inputs for backward; plain evaluation when no grad is needed."""
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in operands):
        return plan.run(*operands)
    return tuc.checkpoint(plan.run, *operands, use_reentrant=False)
