"""Independent references for the Conv-TT-LSTM tests: explicit composite kernels K(i) (Eq. 4.8) and the
naive sum of Eq. 4.9, written without the plugin's Horner/caching code."""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F


def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kernel of ``x -> a * (b * x)`` for cross-correlations a (C0, C1, ka, ka), b (C1, C2, kb, kb):
    ``k[o, i, w] = sum_c sum_{u + v = w} a[o, c, v] b[c, i, u]``, size ka + kb - 1 (built by explicit loops)."""
    ka, kb = a.shape[-1], b.shape[-1]
    k = a.new_zeros(a.shape[0], b.shape[1], ka + kb - 1, ka + kb - 1)
    for v0 in range(ka):
        for v1 in range(ka):
            for u0 in range(kb):
                for u1 in range(kb):
                    k[:, :, v0 + u0, v1 + u1] += a[:, :, v0, v1] @ b[:, :, u0, u1]
    return k


def corr(x: torch.Tensor, w: torch.Tensor, mode: str) -> torch.Tensor:
    """Same-size cross-correlation with zero or circular padding (no bias)."""
    p = w.shape[-1] // 2
    if mode == "circular":
        return F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), w)
    return F.conv2d(x, w, padding=p)


def explicit_kernels(cell) -> List[torch.Tensor]:
    """[K(1), ..., K(N)] with K(1) = G(1), K(i) = K(i-1) o G(i) (sizes i (K - 1) + 1)."""
    ks = [cell.factor(1)]
    for i in range(2, cell.order + 1):
        ks.append(compose(ks[-1], cell.factor(i)))
    return ks


def naive_ctt(cell, tilde: List[torch.Tensor], mode: str) -> torch.Tensor:
    """Eq. 4.9 plus biases: sum_i K(i) * H~(i) + b_1 + sum_{i >= 2} (sum_space K(i-1)) b_i."""
    ks = explicit_kernels(cell)
    out = sum(corr(t, k, mode) for t, k in zip(tilde, ks))
    if cell.gate_bias is not None:
        out = out + cell.factor_bias(1).view(1, -1, 1, 1)
        for i in range(2, cell.order + 1):
            out = out + (ks[i - 2].sum(dim=(2, 3)) @ cell.factor_bias(i)).view(1, -1, 1, 1)
    return out


def lag(window: str, i: int, d: int) -> int:
    """Eq. 4.12: sliding window of H~(i) holds H(t-i) ... H(t-i-(M-N)); fixed window holds H(t-1) ... H(t-M)."""
    return i + d if window == "sliding" else 1 + d


def naive_sequence(cell, xs: torch.Tensor, mode: str) -> torch.Tensor:
    """Run a Conv-TT-LSTM over xs (T, B, Cin, H, W) with explicit kernels; returns hidden states (T, B, C, H, W)."""
    t_len, b, _, hh, ww = xs.shape
    c = xs.new_zeros(b, cell.hidden_channels, hh, ww)
    hs: List[torch.Tensor] = []
    d_size = cell.steps - cell.order + 1 if cell.window == "sliding" else cell.steps
    for t in range(t_len):
        tilde = []
        for i in range(1, cell.order + 1):
            p = cell.preprocessing_kernel(i)  # (C(i), D, Cout, K, K)
            acc = xs.new_zeros(b, p.shape[0], hh, ww)
            for d in range(d_size):
                s = t - lag(cell.window, i, d)
                if s >= 0:
                    acc = acc + corr(hs[s], p[:, d], mode)
            bias: Optional[torch.Tensor] = cell.preprocessing_bias(i)
            tilde.append(acc if bias is None else acc + bias.view(1, -1, 1, 1))
        gates = corr(xs[t], cell.input_weight, mode) + naive_ctt(cell, tilde, mode)
        i_g, f_g, g_g, o_g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f_g) * c + torch.sigmoid(i_g) * torch.tanh(g_g)
        hs.append(torch.sigmoid(o_g) * torch.tanh(c))
    return torch.stack(hs)
