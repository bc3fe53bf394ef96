"""Slow, obviously-correct reference evaluators for conv_einsum tests (independent of zoo.conv_einsum).

``reference_conv_einsum`` rewrites every convolution letter as an explicit one-hot index tensor
T[o, j, k_1, ..., k_m] = 1  iff  j == o*stride - pad_left + dilation*(k_1 + ... + k_m)   (mod N if circular),
so the whole expression becomes one plain einsum evaluated by opt_einsum.
"""

from __future__ import annotations

import itertools
import string
from typing import Mapping

import opt_einsum as oe
import torch
import torch.nn.functional as F
from torch import Tensor


def _opt(value: object, letter: str, index: int, default: object) -> object:
    """An option for one conv letter: from a dict, a per-letter list, or a scalar."""
    if isinstance(value, Mapping):
        return value.get(letter, default)
    if isinstance(value, list):
        return value[index]
    return value


def reference_conv_einsum(equation: str, *ops: Tensor, stride=1, padding=0, dilation=1, padding_mode="zeros") -> Tensor:
    """Evaluate a conv_einsum equation the slow way; padding: int, (l, r) dict values, or 'same'/'valid'/'full'."""
    eq = equation.replace(" ", "")
    body, _, conv = eq.partition("|")
    lhs, _, out = body.partition("->")
    ins = lhs.split(",")
    free = [c for c in string.ascii_letters if c not in eq]
    new_ins = [list(s) for s in ins]
    extra_ops, extra_subs = [], []
    for ci, c in enumerate(conv):
        holders = [i for i, s in enumerate(ins) if c in s]
        data = holders[0]  # the first operand carrying the letter is the data, whatever its size
        kern = [i for i in holders if i != data]
        n = ops[data].shape[ins[data].index(c)]
        ks = [ops[i].shape[ins[i].index(c)] for i in kern]
        s = _opt(stride, c, ci, 1)
        d = _opt(dilation, c, ci, 1)
        p = _opt(padding, c, ci, 0)
        klen = sum(ks) - len(ks) + 1
        span = d * (klen - 1) + 1
        if p == "valid":
            p = (0, 0)
        elif p == "full":
            p = (span - 1, span - 1)
        elif p == "same":
            p = ((span - 1) // 2, span - 1 - (span - 1) // 2)
        elif isinstance(p, int):
            p = (p, p)
        n_out = (n + p[0] + p[1] - span) // s + 1
        t = torch.zeros([n_out, n, *ks], dtype=ops[0].dtype)
        for o in range(n_out):
            for kk in itertools.product(*[range(k) for k in ks]):
                j = o * s - p[0] + d * sum(kk)
                if padding_mode == "circular":
                    j %= n
                elif not 0 <= j < n:
                    continue
                t[(o, j, *kk)] += 1
        o_l, j_l = free.pop(), free.pop()
        k_ls = [free.pop() for _ in kern]
        new_ins[data][ins[data].index(c)] = j_l
        for i, kl in zip(kern, k_ls):
            new_ins[i][ins[i].index(c)] = kl
        extra_ops.append(t)
        extra_subs.append(o_l + j_l + "".join(k_ls))
        out = out.replace(c, o_l)
    subs = ["".join(s) for s in new_ins] + extra_subs
    return oe.contract(",".join(subs) + "->" + out, *ops, *extra_ops, backend="torch")


def torch_conv(x: Tensor, w: Tensor, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") -> Tensor:
    """F.conv1d/2d/3d by the dimension of ``x``; padding_mode 'circular' pads first like nn.ConvNd."""
    nd = x.dim() - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    if padding_mode == "circular":
        pads = [padding] * nd if isinstance(padding, int) else list(padding)
        x = F.pad(x, [p for q in reversed(pads) for p in (q, q)], mode="circular")
        padding = 0
    return conv(x, w, None, stride, padding, dilation, groups)
