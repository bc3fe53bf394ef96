"""Gradients (float64 gradcheck) and checkpointing."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from zoo.conv_einsum import conv_einsum, conv_einsum_path


def rnd(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)


def test_gradcheck_plain_conv_options() -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = rnd(gen, 1, 2, 5, 4), rnd(gen, 3, 2, 2, 3)
    for opts in (dict(stride=2, padding=1, dilation=1), dict(padding="same", dilation=2),
                 dict(padding=1, padding_mode="circular")):
        assert gradcheck(lambda a, b: conv_einsum("bshw,tshw->bthw|hw", a, b, **opts), (x, w))


def test_gradcheck_factorized_and_composed() -> None:
    gen = torch.Generator().manual_seed(1)
    x = rnd(gen, 1, 3, 5, 5)
    cp = [rnd(gen, 2, 2), rnd(gen, 2, 3), rnd(gen, 2, 3), rnd(gen, 2, 2)]
    for optimize in ("auto", "naive"):
        assert gradcheck(lambda *t: conv_einsum("bshw,rt,rs,rh,rw->bthw|hw", *t, stride=2, padding=1,
                                                optimize=optimize), (x, *cp))
    k1, k2 = rnd(gen, 3, 2, 2), rnd(gen, 2, 2, 2)
    for path in ([(0, 1), (0, 1)], [(1, 2), (0, 1)]):  # data first / kernels composed first
        assert gradcheck(lambda *t: conv_einsum("bsh,sth,tuh->buh|h", *t, optimize=path, padding="same"),
                         (rnd(gen, 1, 3, 6), k1, k2))


def test_gradcheck_unfold_path_and_checkpoint() -> None:
    gen = torch.Generator().manual_seed(2)
    # the data for h is operand 0, for w operand 1 (the first operands carrying them); each meets a kernel
    # first, so the last step has the data for h on one side, for w on the other -> unfold step
    eq, path = "sh,tw,hw,hw->sthw|hw", [(0, 2), (0, 1), (0, 1)]
    ops = (rnd(gen, 2, 5), rnd(gen, 3, 4), rnd(gen, 2, 2), rnd(gen, 2, 3))
    assert conv_einsum_path(eq, *ops, padding=1, optimize=path)[1].steps[-1].kernel == "unfold"
    assert gradcheck(lambda *t: conv_einsum(eq, *t, padding=1, optimize=path), ops)
    x, w = rnd(gen, 1, 2, 5), rnd(gen, 2, 2, 3)
    assert gradcheck(lambda p, q: conv_einsum("bsh,tsh->bth|h", p, q, checkpoint=True, stride=2), (x, w))


def _saved_bytes(fn) -> int:
    """Bytes autograd keeps for backward while running ``fn`` (recorded through saved-tensor hooks)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


def test_checkpoint_keeps_no_intermediates_and_same_gradients() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 8, 12, 12, generator=gen)
    f = [torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen), torch.randn(3, 3, generator=gen),
         torch.randn(3, 3, generator=gen)]
    ops = [t.requires_grad_() for t in (x, f[0], f[1], f[2], f[3])]
    eq = "bshw,rt,rs,rh,rw->bthw|hw"
    plain, y0 = _saved_bytes(lambda: conv_einsum(eq, *ops, padding=1))
    ckpt, y1 = _saved_bytes(lambda: conv_einsum(eq, *ops, padding=1, checkpoint=True))
    inputs = sum(t.numel() * t.element_size() for t in ops)
    assert ckpt <= inputs < plain
    torch.testing.assert_close(y0, y1)
    g0 = torch.autograd.grad(y0.square().sum(), ops)
    g1 = torch.autograd.grad(y1.square().sum(), ops)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b)
