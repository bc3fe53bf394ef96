"""Cells: shapes, the linear-time CTT against the naive sum of Eq. 4.9, order-1 / 1x1 reductions, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch

from zoo_convttlstm.cells import ConvLSTMCell, ConvTTLSTMCell

from .reference import corr, explicit_kernels, naive_ctt, naive_sequence


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


SETTINGS = list(itertools.product([1, 2, 3, 5], [0, 2], [4, [2, 3, 5, 4, 6]], [1, 3, 5], ["sliding", "fixed"]))


@pytest.mark.parametrize("order,extra,ranks,k,window", SETTINGS)
def test_shapes_over_settings(order, extra, ranks, k, window):
    if isinstance(ranks, list):
        ranks = ranks[:order]
    cell = ConvTTLSTMCell(3, 6, order=order, steps=order + extra, ranks=ranks, kernel_size=k, window=window)
    x = torch.randn(2, 3, 7, 5)
    state = None
    for _ in range(order + extra + 2):
        h, state = cell(x, state)
    assert h.shape == (2, 6, 7, 5)
    assert state.c.shape == (2, 6, 7, 5) and len(state.history) == order + extra
    d = extra + 1 if window == "sliding" else order + extra
    r = [ranks] * order if isinstance(ranks, int) else ranks
    expected = (3 + r[0]) * 24 * k * k + 24 + sum(r[i - 1] * r[i] * k * k + r[i - 1] for i in range(1, order))
    expected += d * sum(r) * 6 * k * k + sum(r)
    assert sum(p.numel() for p in cell.parameters()) == expected
    assert cell.macs(7, 5) == (expected - 24 - sum(r[:-1]) - sum(r)) * 35


@pytest.mark.parametrize("order,k", [(1, 3), (2, 3), (3, 3), (3, 5), (4, 1)])
def test_linear_time_ctt_equals_naive_sum_zero_padding(order, k):
    torch.manual_seed(order)
    cell = ConvTTLSTMCell(2, 3, order=order, steps=order, ranks=[3, 2, 4, 2][:order], kernel_size=k).double()
    _randomize(cell, order)
    x = torch.randn(2, 2, 16, 15, dtype=torch.float64)
    tilde = [torch.randn(2, r, 16, 15, dtype=torch.float64) for r in cell.ranks]
    fast = cell.tensor_train(x, tilde)
    slow = corr(x, cell.input_weight, "zeros") + naive_ctt(cell, tilde, "zeros")
    m = order * (k // 2)  # zero padding of the intermediates differs from the big kernel's only near the border
    inner = (slice(None), slice(None), slice(m, 16 - m), slice(m, 15 - m))
    assert torch.allclose(fast[inner], slow[inner], atol=1e-10, rtol=1e-10)
    if order > 1 and k > 1:
        assert not torch.allclose(fast, slow)  # the border really differs: the check above is not vacuous
    else:
        assert torch.allclose(fast, slow, atol=1e-10)  # no nesting: equal everywhere


def test_composite_kernel_sizes_grow_linearly():
    cell = ConvTTLSTMCell(1, 2, order=4, steps=4, ranks=3, kernel_size=5)
    assert [kk.shape[-1] for kk in explicit_kernels(cell)] == [5, 9, 13, 17]  # K(i) = i (K - 1) + 1


@pytest.mark.parametrize(
    "order,steps,ranks,k,window",
    [(1, 1, 3, 3, "sliding"), (2, 4, [3, 2], 3, "sliding"), (3, 5, 2, 3, "sliding"), (2, 3, 2, 5, "fixed"),
     (3, 3, [2, 3, 2], 3, "fixed"), (3, 4, 2, 1, "sliding")],
)
def test_recurrence_equals_naive_higher_order_lstm(order, steps, ranks, k, window):
    """Whole cell over 7 steps (circular padding: composition of convolutions is exact everywhere)."""
    torch.manual_seed(steps)
    cell = ConvTTLSTMCell(2, 3, order=order, steps=steps, ranks=ranks, kernel_size=k, window=window,
                          padding_mode="circular").double()
    _randomize(cell, steps)
    xs = torch.randn(7, 2, 2, 13, 13, dtype=torch.float64)
    state, outs = None, []
    for t in range(7):
        h, state = cell(xs[t], state)
        outs.append(h)
    ref = naive_sequence(cell, xs, "circular")
    assert torch.allclose(torch.stack(outs), ref, atol=1e-10, rtol=1e-9)


def test_order_one_with_1x1_filters_is_a_convlstm_with_low_rank_transition():
    """Sec. 4.6 ablation: order 1 and 1x1 filters remove convolutions and higher order: a ConvLSTM whose
    state-to-gate matrix is the rank-C(1) product G(1) P(1) (1x1 kernels; standard TT of order 1)."""
    torch.manual_seed(0)
    tt = ConvTTLSTMCell(3, 5, order=1, steps=1, ranks=2, kernel_size=1).double()
    _randomize(tt)
    lstm = ConvLSTMCell(3, 5, kernel_size=1).double()
    g1 = tt.factor(1)[:, :, 0, 0]  # (20, 2)
    p1 = tt.preprocessing_kernel(1)[:, 0, :, 0, 0]  # (2, 5)
    with torch.no_grad():
        lstm.weight.copy_(torch.cat([tt.input_weight, (g1 @ p1)[:, :, None, None]], dim=1))
        lstm.bias.copy_(tt.gate_bias + g1 @ tt.preprocessing_bias(1))
    assert torch.linalg.matrix_rank(g1 @ p1) == 2
    x = torch.randn(4, 2, 3, 6, 6, dtype=torch.float64)
    s1 = s2 = None
    for t in range(4):
        h1, s1 = tt(x[t], s1)
        h2, s2 = lstm(x[t], s2)
        assert torch.allclose(h1, h2, atol=1e-12)


def test_order_three_1x1_is_standard_tensor_train_per_pixel():
    """With 1x1 filters the CTT of Eq. 4.9 is a per-pixel sum of matrix (TT) products G(1) ... G(i) H~(i)."""
    torch.manual_seed(1)
    cell = ConvTTLSTMCell(2, 3, order=3, steps=3, ranks=[2, 3, 4], kernel_size=1, bias=False).double()
    _randomize(cell)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    tilde = [torch.randn(1, r, 4, 4, dtype=torch.float64) for r in cell.ranks]
    g = [cell.factor(i)[:, :, 0, 0] for i in (1, 2, 3)]
    ref = torch.einsum("oc,bchw->bohw", cell.input_weight[:, :, 0, 0], x)
    ref = ref + torch.einsum("oc,bchw->bohw", g[0], tilde[0])
    ref = ref + torch.einsum("oc,cd,bdhw->bohw", g[0], g[1], tilde[1])
    ref = ref + torch.einsum("oc,cd,de,behw->bohw", g[0], g[1], g[2], tilde[2])
    assert torch.allclose(cell.tensor_train(x, tilde), ref, atol=1e-12)


def test_gradcheck_through_steps():
    torch.manual_seed(0)
    cell = ConvTTLSTMCell(1, 2, order=2, steps=3, ranks=2, kernel_size=3).double()
    x = torch.randn(4, 1, 1, 5, 5, dtype=torch.float64, requires_grad=True)

    def run(inp):
        state, h = None, None
        for t in range(inp.shape[0]):
            h, state = cell(inp[t], state)
        return h

    assert torch.autograd.gradcheck(run, (x,), eps=1e-6, atol=1e-6)


def test_convlstm_cell_matches_equation():
    torch.manual_seed(0)
    cell = ConvLSTMCell(2, 3, kernel_size=3).double()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    h0, c0 = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(2, 3, 6, 6, dtype=torch.float64)
    w_x, w_h = cell.weight[:, :2], cell.weight[:, 2:]
    gates = corr(x, w_x, "zeros") + corr(h0, w_h, "zeros") + cell.bias.view(1, -1, 1, 1)
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
    h, (h2, c2) = cell(x, (h0, c0))
    assert torch.allclose(c2, c) and torch.allclose(h, torch.sigmoid(o) * torch.tanh(c))


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(order=3, steps=2), "steps"), (dict(kernel_size=4), "odd"), (dict(ranks=[2, 2]), "ranks"),
     (dict(window="tube"), "window"), (dict(order=0), "order"), (dict(padding_mode="reflect"), "padding_mode")],
)
def test_cell_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvTTLSTMCell(2, 3, **kwargs)


def test_cell_rejects_wrong_input_channels():
    with pytest.raises(ValueError, match=r"\(batch, 2, height, width\)"):
        ConvTTLSTMCell(2, 3)(torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_conv_einsum_backend_matches_torch_backend(mode):
    torch.manual_seed(0)
    a = ConvTTLSTMCell(2, 3, order=3, steps=4, ranks=2, kernel_size=3, padding_mode=mode).double()
    b = ConvTTLSTMCell(2, 3, order=3, steps=4, ranks=2, kernel_size=3, padding_mode=mode,
                       backend="conv_einsum").double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 1, 2, 7, 6, dtype=torch.float64)
    sa = sb = None
    for t in range(5):
        ha, sa = a(x[t], sa)
        hb, sb = b(x[t], sb)
        assert torch.allclose(ha, hb, atol=1e-12)
