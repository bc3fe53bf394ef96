"""zoo.memory.saved_bytes against hand-counted saved tensors."""

from __future__ import annotations

import torch

from zoo.memory import saved_bytes


def test_saved_bytes_counts_each_storage_once_and_skips_excluded_ones() -> None:
    x = torch.randn(8, 5, requires_grad=True)  # 160 bytes
    w = torch.randn(5, 3, requires_grad=True)  # 60 bytes
    # x @ w saves x and w; x.t() @ ones saves a view of x (same storage) and the 8x1 ones (32 bytes, for x's
    # gradient); tanh saves its 8x3 result (96 bytes)
    y, n = saved_bytes(lambda: torch.tanh(x @ w) + (x.t() @ torch.ones(8, 1)).sum())
    assert n == 160 + 60 + 32 + 96
    assert y.shape == (8, 3)
    _, kept = saved_bytes(lambda: torch.tanh(x @ w), exclude=[x, w])
    assert kept == 96
    with torch.no_grad():
        assert saved_bytes(lambda: torch.tanh(x @ w))[1] == 0
