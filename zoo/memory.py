"""Activation memory: the bytes autograd keeps from forward to backward."""

from __future__ import annotations

from typing import Callable, Iterable, Tuple, TypeVar

import torch

T = TypeVar("T")


def saved_bytes(fn: Callable[[], T], exclude: Iterable[torch.Tensor] = ()) -> Tuple[T, int]:
    """Run ``fn()`` and return its result and the bytes of the tensors autograd saved for backward meanwhile.

    Each storage counts once (views of one tensor share it); storages of ``exclude`` (e.g. the inputs and
    parameters, which live anyway) do not count.
    """
    seen = {(t.untyped_storage().data_ptr(), t.device) for t in exclude}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total
