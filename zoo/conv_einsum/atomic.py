"""Atomic (pairwise) conv_einsum steps, planned once from shapes and run many times.

A step combines two tensors A and B (letter orders known at plan time) into the letters the rest of the
network still needs. Three kernels, chosen at plan time:

- ``MatmulStep``: no shared convolution letter, and the larger operand can be read as a batch of matrices
  without a copy (its contracted letters form one run, its batch letters precede it) -> one broadcast
  ``torch.matmul``; e.g. a channel contraction of (B, C, H, W) data is ``W @ x.view(B, C, H*W)``, the
  layout F.conv2d 1x1 uses, with the result in (B, C', H, W) order.
- ``EinsumStep``: any other step without shared convolution letter -> ``torch.einsum``.
- ``ConvStep``: 1-3 shared convolution letters, every data mode on the same side -> one ``F.conv1d/2d/3d``
  call; contraction letters become input channels, batch letters become ``groups``, outer letters of the
  data side the conv batch, outer letters of the kernel side the output channels (Sec. 3.4.1).
- ``UnfoldStep``: any other case (4+ shared convolution letters, data modes on both sides) -> windows by
  ``Tensor.unfold`` and one einsum. Slower, but general.

A shared convolution letter is either a *correlation* (one side holds the data for that letter: pad it if
this is its first kernel, correlate with dilation, apply the stride once the last kernel is in) or a
*full convolution* of two kernels (lengths K1, K2 -> K1 + K2 - 1; the second is flipped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .modes import Problem
from .parse import ConvEinsumError
from .sequencer import Network

FOLD_MAX_CHANNELS = 8
# CPU: w @ x over a batch of x runs as one 1x1 convolution when x has fewer columns than CONV1X1_MAX_COLUMNS, or
# fewer than CONV1X1_WIDE_COLUMNS and w has at least CONV1X1_WIDE_MIN_WEIGHT elements (measured: oneDNN's 1x1
# convolution wins up to 2x on narrow images and on large weights, and loses up to 3x to bmm on wide images)
CONV1X1_MAX_COLUMNS = 128
CONV1X1_WIDE_COLUMNS = 512
CONV1X1_WIDE_MIN_WEIGHT = 1 << 18
BROADCAST_MAX_RATIO = 4  # matmul steps broadcast the small operand up to this many times the size of x or the result
_CONV: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def pad_dim(x: Tensor, dim: int, left: int, right: int, circular: bool) -> Tensor:
    """Pad one dimension of ``x`` with zeros or circularly (wrap-around, as nn.Conv2d padding_mode='circular')."""
    if left == 0 and right == 0:
        return x
    n = x.shape[dim]
    if circular:
        parts = [x.narrow(dim, n - left, left), x, x.narrow(dim, 0, right)]
    else:
        shape_l, shape_r = list(x.shape), list(x.shape)
        shape_l[dim], shape_r[dim] = left, right
        parts = [x.new_zeros(shape_l), x, x.new_zeros(shape_r)]
    return torch.cat([p for p in parts if p.shape[dim] > 0], dim=dim)


@dataclass(frozen=True)
class ConvLetter:
    """What one shared convolution letter does in a step (after padding ``pad``)."""

    letter: str
    full: bool  # True: kernel-kernel full convolution; False: data-kernel correlation
    data_on_a: bool  # correlation only: the data is in A
    pad: tuple[int, int]
    circular: bool
    stride: int
    dilation: int


@dataclass(frozen=True)
class EinsumStep:
    """Pairwise step without shared convolution letters."""

    a: str
    b: str
    out: str

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        ids = {c: i for i, c in enumerate(dict.fromkeys(self.a + self.b))}
        return torch.einsum(x, [ids[c] for c in self.a], y, [ids[c] for c in self.b], [ids[c] for c in self.out])


@dataclass(frozen=True)
class MatmulStep:
    """Pairwise step as ``torch.matmul`` on a view of the larger operand ``x`` (A unless ``swap``).

    ``x_left`` True: ``w [*lead, N, K] @ x [*lead, K, T]``; False: ``x [*lead, R, K] @ w [*lead, K, N]``.
    Only the smaller operand ``w`` is permuted (lead dims of size 1 broadcast over x's outer letters).
    """

    swap: bool
    x_left: bool
    x_shape: tuple[int, ...]
    w_perm: tuple[int, ...]
    w_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_perm: tuple[int, ...] | None = None  # a requested letter order: one contiguous permuted copy at the end
    conv_1x1: str = ""  # w @ x with one w for a batch of x as one 1x1 convolution: "cpu" (there only) or "any"

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        x, w = (b, a) if self.swap else (a, b)
        x = x.reshape(self.x_shape)
        w = w.permute(self.w_perm).reshape(self.w_shape)
        if self.conv_1x1 == "any" or (self.conv_1x1 == "cpu" and x.device.type == "cpu"):  # one GEMM, batch x columns
            *_, k, t = self.x_shape
            y = F.conv1d(x.reshape(-1, k, t), w.reshape(self.w_shape[-2:]).unsqueeze(-1))
        elif not self.x_left:  # torch.matmul folds x's batch into the rows of one mm when w broadcasts
            y = torch.matmul(x, w)
        else:  # w @ x: an explicit bmm over x's lead dims (torch.matmul would fold by copying a transposed x)
            *lead, k, t = self.x_shape
            batch = math.prod(lead)
            w = w.expand(*lead, *self.w_shape[-2:]).reshape(batch, *self.w_shape[-2:])
            y = torch.bmm(w, x.reshape(batch, k, t))
        y = y.reshape(self.out_shape)
        return y if self.out_perm is None else y.permute(self.out_perm).contiguous()


@dataclass(frozen=True)
class ConvStep:
    """Pairwise step evaluated by one convNd call; ``x`` is the data side (A unless ``swap``)."""

    swap: bool
    x_perm: tuple[int, ...]
    x_shape: tuple[int, ...]  # [N, G*C, *spatial]
    w_perm: tuple[int, ...]
    w_shape: tuple[int, ...]  # [G*O, C, *kernel]
    flip: tuple[int, ...]  # weight dims to flip (full convolutions)
    explicit_pad: tuple[tuple[int, int, int, bool], ...]  # (dim, left, right, circular) applied by pad_dim
    conv_padding: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    out_shape: tuple[int, ...]
    out: str
    fold: int = 1  # >1: on CPU, fold the conv batch (size fold) into groups, repeating the weight per sample

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        x, w = (b, a) if self.swap else (a, b)
        w = w.permute(self.w_perm).reshape(self.w_shape)
        groups = self.groups
        if self.fold > 1 and x.device.type == "cpu":
            # CPU convolutions with few channels run far faster as one grouped conv than as a batch
            x = x.permute(self.x_perm).reshape(1, self.fold * self.x_shape[1], *self.x_shape[2:])
            w = w.unsqueeze(0).expand(self.fold, *w.shape).reshape(self.fold * w.shape[0], *w.shape[1:])
            groups *= self.fold
        else:
            x = x.permute(self.x_perm).reshape(self.x_shape)
        if self.flip:
            w = w.flip(self.flip)
        for dim, left, right, circular in self.explicit_pad:
            x = pad_dim(x, dim, left, right, circular)
        conv = _CONV[len(self.stride)]
        y = conv(x, w, None, self.stride, self.conv_padding, self.dilation, groups)
        return y.reshape(self.out_shape)


@dataclass(frozen=True)
class UnfoldStep:
    """General pairwise step: every shared convolution letter is turned into windows plus a contraction."""

    a: str
    b: str
    out: str
    letters: tuple[ConvLetter, ...]
    kernel_sizes: tuple[int, ...]  # kernel length of each shared letter in this step

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        ids = {c: i for i, c in enumerate(dict.fromkeys(self.a + self.b))}
        xa, ya = list(self.a), list(self.b)
        x_ids, y_ids = [ids[c] for c in xa], [ids[c] for c in ya]
        next_id = len(ids)
        if next_id + len(self.letters) > 52:
            raise ConvEinsumError("an unfold step needs more than 52 distinct letters; split the equation")
        for spec, k in zip(self.letters, self.kernel_sizes):
            win_is_x = spec.data_on_a or spec.full
            win, ker = (x, y) if win_is_x else (y, x)
            win_letters, ker_letters = (xa, ya) if win_is_x else (ya, xa)
            win_ids, ker_ids = (x_ids, y_ids) if win_is_x else (y_ids, x_ids)
            d = win_letters.index(spec.letter)
            win = pad_dim(win, d, spec.pad[0], spec.pad[1], spec.circular)
            span = spec.dilation * (k - 1) + 1
            win = win.unfold(d, span, spec.stride)[..., :: spec.dilation]
            win_ids.append(next_id)
            win_letters.append("")
            kd = ker_letters.index(spec.letter)
            if spec.full:
                ker = ker.flip(kd)
            ker_ids[kd] = next_id
            ker_letters[kd] = ""
            next_id += 1
            x, y = (win, ker) if win_is_x else (ker, win)
        return torch.einsum(x, x_ids, y, y_ids, [ids[c] for c in self.out])


Step = EinsumStep | MatmulStep | ConvStep | UnfoldStep


def _plan_matmul(problem: Problem, net: Network, mx: int, x: str, mw: int, w: str, kept: frozenset[str],
                 swap: bool, order: str) -> tuple[MatmulStep, str] | None:
    """A MatmulStep keeping ``x``'s layout, or None when ``x`` cannot be viewed as a batch of matrices.

    ``w``'s outer letters come out in their ``order`` (the requested or the final output order).
    """
    contract = [c for c in x if c in w and c not in kept]
    batch = {c for c in x if c in w and c in kept}
    if any(c not in kept for c in set(x) ^ set(w)):
        return None
    if contract:
        start = x.index(contract[0])
        if x[start:start + len(contract)] != "".join(contract):
            return None  # contracted letters not adjacent in x: no view
    else:  # outer product: an empty contraction right after the last batch letter
        start = max((x.index(c) + 1 for c in batch), default=0)
    lead, trail = x[:start], x[start + len(contract):]
    if any(c in batch for c in trail):
        return None
    outer_w = sorted((c for c in w if c not in x), key=lambda c: order.index(c) if c in order else len(order))

    def xs(c: str) -> int:
        return problem.size(c, net.members(mx))

    def ws(c: str) -> int:
        return problem.size(c, net.members(mw))

    k, n = math.prod(xs(c) for c in contract), math.prod(ws(c) for c in outer_w)
    x_left = bool(trail)
    if not x_left:  # rows: the trailing run of lead letters that are not batch letters
        rows = len(lead)
        while rows > 0 and lead[rows - 1] not in batch:
            rows -= 1
        lead, trail = lead[:rows], lead[rows:]
    lead_w = [c for c in lead if c in batch]
    pre = tuple(xs(c) if c in batch else 1 for c in lead)
    spread = math.prod(xs(c) for c in lead if c not in batch)  # w is broadcast (and its gradient summed) this often
    folded = not x_left and not lead_w  # torch.matmul folds x's lead into the rows of one mm: no broadcast
    t = math.prod(xs(c) for c in trail)
    shared_w = x_left and not lead_w and spread > 1  # one w for all of x's lead dims: a 1x1 convolution can do it
    too_big = not folded and spread > 1 and spread * math.prod(pre) * n * k > BROADCAST_MAX_RATIO * max(
        math.prod(map(xs, x)), math.prod(pre) * spread * n * t)  # broadcast w and its gradient outgrow x and result
    if too_big and not shared_w:
        return None  # permuting x is cheaper
    if n * t == 1:
        return None  # a batch of dot products: nothing to gain over torch.einsum
    if x_left:
        x_shape, w_src, w_shape = (*map(xs, lead), k, t), lead_w + outer_w + contract, (*pre, n, k)
        out = lead + "".join(outer_w) + trail
    else:
        x_shape, w_src, w_shape = (*map(xs, lead), t, k), lead_w + contract + outer_w, (*pre, k, n)
        out = lead + trail + "".join(outer_w)
    out_shape = tuple(problem.size(c, net.members(mx | mw)) for c in out)
    # oneDNN's 1x1 convolution beats a bmm of narrow (t-column) products; it also avoids an oversized broadcast
    narrow = t < CONV1X1_MAX_COLUMNS or (t < CONV1X1_WIDE_COLUMNS and n * k >= CONV1X1_WIDE_MIN_WEIGHT)
    conv = "any" if too_big else "cpu" if shared_w and narrow else ""
    return MatmulStep(swap, x_left, x_shape, tuple(w.index(c) for c in w_src), w_shape, out_shape,
                      conv_1x1=conv), out


def _copied_elements(step: MatmulStep, out: str, order: str) -> int:
    """Elements a matmul step copies for layout: ``w`` when its permutation is not the identity, the result
    when it is permuted at the end of the step or its letters are out of ``order`` (a later copy)."""
    copied = math.prod(step.w_shape) if list(step.w_perm) != sorted(step.w_perm) else 0
    in_order = [c for c in order if c in out]
    if step.out_perm is not None or [c for c in out if c in order] != in_order:
        copied += math.prod(step.out_shape)
    return copied


def _out_order(a: str, b: str, kept: frozenset[str], conv: str) -> str:
    """Output letter order of einsum/unfold steps: ordinary letters first, convolution letters last."""
    order = [c for c in dict.fromkeys(a + b) if c in kept]
    return "".join([c for c in order if c not in conv] + [c for c in order if c in conv])


def _conv_letters(problem: Problem, net: Network, ma: int, mb: int, shared: Sequence[str]) -> list[ConvLetter]:
    specs = []
    sa, sb = net.members(ma), net.members(mb)
    for c in shared:
        mode = problem.modes[c]
        if mode.data in sa or mode.data in sb:
            data_set = sa if mode.data in sa else sb
            first = not any(k in data_set for k in mode.kernels)
            last = all(k in sa | sb for k in mode.kernels)
            specs.append(
                ConvLetter(c, False, mode.data in sa, mode.pad if first else (0, 0), mode.circular,
                           mode.stride if last else 1, mode.dilation)
            )
        else:
            k = mode.length(sb)
            specs.append(ConvLetter(c, True, False, (k - 1, k - 1), False, 1, 1))
    return specs


def plan_pair(problem: Problem, net: Network, ma: int, a: str, mb: int, b: str,
              out_order: str | None = None) -> tuple[Step, str]:
    """Plan the step combining A (mask ``ma``, letters ``a``) and B (``mb``, ``b``); returns (step, out letters).

    ``out_order``: letter order of an einsum step's result (e.g. the layout a later convolution wants for its
    weight, so that no permuted copy is needed there; a matmul step copies its result once into that order);
    ignored by convolution steps.
    """
    kept = net.kept(ma | mb)
    conv = problem.equation.conv
    shared_conv = [c for c in a if c in conv and c in b]
    if not shared_conv:
        big_b = net.size(mb) > net.size(ma)
        order = out_order or problem.equation.output
        options = []
        for swap in (big_b, not big_b):  # view the larger operand first; keep the option that copies least
            got = _plan_matmul(problem, net, *((mb, b, ma, a) if swap else (ma, a, mb, b)), kept, swap, order)
            if got is not None and out_order not in (None, got[1]) and sorted(out_order) == sorted(got[1]):
                got = replace(got[0], out_perm=tuple(got[1].index(c) for c in out_order)), out_order
            if got is not None and out_order in (None, got[1]):
                options.append((_copied_elements(got[0], got[1], order), len(options), got))
        if options:
            return min(options)[2]
        out = _out_order(a, b, kept, conv)
        if out_order is not None:
            if sorted(out_order) != sorted(out):
                raise ConvEinsumError(f"out_order {out_order!r} is not a permutation of the step's letters {out!r}")
            out = out_order
        return EinsumStep(a, b, out), out
    specs = _conv_letters(problem, net, ma, mb, shared_conv)
    corr_sides = {s.data_on_a for s in specs if not s.full}
    if len(shared_conv) > 3 or len(corr_sides) > 1:
        out = _out_order(a, b, kept, conv)
        sizes = tuple(problem.size(s.letter, net.members(mb if (s.data_on_a or s.full) else ma)) for s in specs)
        return UnfoldStep(a, b, out, tuple(specs), sizes), out
    swap = corr_sides == {False}
    if swap:
        specs = [ConvLetter(s.letter, s.full, True, s.pad, s.circular, s.stride, s.dilation) for s in specs]
    return _plan_conv(problem, net, (mb, b, ma, a) if swap else (ma, a, mb, b), specs, kept, swap)


def _plan_conv(problem: Problem, net: Network, sides: tuple[int, str, int, str], specs: list[ConvLetter],
               kept: frozenset[str], swap: bool) -> tuple[ConvStep, str]:
    mx, x, mw, w = sides
    conv = problem.equation.conv
    shared = {s.letter for s in specs}
    passive = [c for c in x if c in conv and c not in w]
    spatial_set = set(shared) | set(passive[: max(0, 3 - len(shared))])
    spatial = [c for c in x if c in spatial_set]
    batch = [c for c in x if c in w and c not in shared and c in kept]
    contract = [c for c in x if c in w and c not in shared and c not in kept]
    n_letters = [c for c in x if c not in w and c not in spatial_set]
    final = problem.equation.output  # kernel-side outer letters in output order: no permute after a last step
    o_letters = sorted((c for c in w if c not in x), key=lambda c: final.index(c) if c in final else len(final))

    def xs(c: str) -> int:
        return problem.size(c, net.members(mx))

    def ws(c: str) -> int:
        return problem.size(c, net.members(mw))

    spec_of = {s.letter: s for s in specs}
    x_perm = tuple(x.index(c) for c in n_letters + batch + contract + spatial)
    g = math.prod(xs(c) for c in batch)
    cin = math.prod(xs(c) for c in contract)
    nb = math.prod(xs(c) for c in n_letters)
    cout = math.prod(ws(c) for c in o_letters)
    x_shape = (nb, g * cin, *(xs(c) for c in spatial))
    kernel_numel = g * cout * cin * math.prod(ws(c) for c in shared)
    # fold when input channels are few and the repeated weight is no larger than the data
    fold = nb if nb > 1 and cin <= FOLD_MAX_CHANNELS and nb * kernel_numel <= math.prod(x_shape) else 1
    # weight: [G, O, C, spatial] with size-1 dims for the passive spatial letters
    w_src = [c for c in batch + o_letters + contract + spatial if c in w]
    w_perm = tuple(w.index(c) for c in w_src)
    w_shape = (g * math.prod(ws(c) for c in o_letters), cin, *(ws(c) if c in shared else 1 for c in spatial))
    flip = tuple(2 + i for i, c in enumerate(spatial) if c in shared and spec_of[c].full)
    explicit: list[tuple[int, int, int, bool]] = []
    conv_padding: list[int] = []
    for i, c in enumerate(spatial):
        s = spec_of.get(c)
        left, right = s.pad if s else (0, 0)
        if s is not None and s.full:  # full convolution with the weight side's kernel
            left = right = ws(c) - 1
        if s is not None and (left != right or s.circular):
            explicit.append((2 + i, left, right, s.circular))
            conv_padding.append(0)
        else:
            conv_padding.append(left)
    stride = tuple(spec_of[c].stride if c in spec_of else 1 for c in spatial)
    dilation = tuple(spec_of[c].dilation if c in spec_of else 1 for c in spatial)
    mo = mx | mw
    out_letters = n_letters + batch + o_letters + spatial
    out_shape = tuple(problem.size(c, net.members(mo)) for c in out_letters)
    out = "".join(out_letters)
    step = ConvStep(swap, x_perm, x_shape, w_perm, w_shape, flip, tuple(explicit), tuple(conv_padding),
                    stride, dilation, g, out_shape, out, fold)
    return step, out
