"""Orthogonal layers: SC-Fac convolutions (Eq. 7.3, Algorithms 1 and 2, Table 7.1) and an orthogonal linear map.

``OrthoConv2d(S, T, K, stride=R, dilation=D, groups=G)`` builds, for every group, a ``C x C``
paraunitary system with ``K' = K / R`` taps per spatial dimension (``C = max(T/G, S R^2 / G)``),
keeps ``T/G`` rows and ``S R^2 / G`` columns, reshapes it to a stride-``R`` kernel (polyphase,
Algorithm 2) and concatenates the groups. With circular padding the layer is

* orthogonal (``||conv(x)|| = ||x||`` and invertible) when ``T = S R^2``;
* an isometry (column-orthogonal) when ``T > S R^2``;
* a co-isometry (row-orthogonal: all singular values 1, ``T N`` of them) when ``T < S R^2``.

Dilation up-samples the kernel (``H(z^D)``, Table 7.1) and keeps these properties.

Composition order (``order``): the 2-D system is a product of a height system ``H1(z1)`` and a width system
``H2(z2)``, and the dissertation states both orders: Sec. 7.3.3's text has ``H = H1(z1) H2(z2)``
(``order="width-first"``, the default, what this zoo always built: the input is filtered along the width, then
the height), Algorithm 1 step 3 (``H[:, :, i, j] = H2[j] H1[i]``) and umd-huang-lab/ortho-conv have
``H = H2(z2) H1(z1)`` (``order="height-first"``: official weights reproduce with it). The two are different
operators on the same factors; a ``height-first`` kernel ``S -> T`` is the channel transpose of the ``width-first``
kernel ``T -> S`` built from the tap-wise transposed systems ``H1^T, H2^T`` (which belong to the same factorised
family), and ``height-first(H1, H2)`` is the adjoint of ``width-first`` on the para-conjugates ``H~(z) = H(1/z)^T``.

Padding: ``padding_mode="circular"`` with ``padding="same"`` (output ``N / R``) is the exactly orthogonal
operator. ``padding_mode="zeros"`` with ``padding="same"`` crops the full linear convolution to ``N / R``
outputs: only 1-Lipschitz, it loses the energy that leaks over the border (``||y|| < ||x||`` in general).
``padding="full"`` (zeros) keeps every output of the full linear convolution, ``N / R + D (K / R - 1)`` per
dimension, as the official code's zero-padding mode does: a paraunitary FIR system preserves the norm of every
finitely supported input, so ``||y|| = ||x||`` when ``T = S R^2``. In ``eval()`` mode the dense kernel is
built once, cached and reused until a parameter or buffer changes (inference costs one convolution;
parameters receive no gradient in eval mode). In training, a stride-1 2-D layer whose separable form is
cheaper (``K (T + S) C < K^2 T S`` multiply-adds per pixel and group) applies ``H(z1, z2) = H1(z1) H2(z2)``
as a ``1 x K`` then a ``K x 1`` convolution (:meth:`separable_forward`, the same operator) and never builds
the dense kernel. ``factor_dtype`` (default float64) is the precision in which
the orthogonal factors and their cascade are computed before the kernel is cast to the parameters' dtype:
float32 matrix exponentials of trained (large-norm) skew matrices and a cascade of ``2 K'`` factors lose
orthogonality at the 1e-5 level, float64 keeps a float32 layer within ~1e-6. ``None`` computes natively.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import geotorch
import torch
import torch.nn.functional as F
from geotorch.skew import Skew
from geotorch.so import SO
from geotorch.stiefel import Stiefel
from torch import Tensor, nn
from torch.nn.utils import parametrize

from zoo_scfac.expm import expm
from zoo_scfac.initialization import INITS, _centre, haar_frame, haar_orthogonal, random_ranks
from zoo_scfac.paraunitary import paraunitary_1d, polyphase_to_strided, projectors, separable_2d

PADDING_MODES = ("circular", "zeros")
PADDINGS = ("same", "full")
ORDERS = ("width-first", "height-first")


class _Orthogonal(Stiefel):
    """geotorch's ``Stiefel`` / ``SO`` parametrisation (``weight = (base @ expm(skew))[..., :k]``, same buffers, same
    forward and ``right_inverse``) built without sampling: geotorch's constructor draws a Haar ``base`` and
    ``geotorch.orthogonal`` a second Haar matrix, both by QR of an ``n x n`` Gaussian matrix (and, for ``k < n``,
    completes the frame with two more QRs), all overwritten by the layer's own initialisation. Here ``base`` is
    left empty until :func:`_set_orthogonal_` writes it."""

    def __init__(self, size: Sequence[int], triv: Callable[[Tensor], Tensor] = expm) -> None:
        nn.Module.__init__(self)
        size = tuple(size)
        n, tensorial_size = SO.parse_size(Stiefel.size_so(size))
        self.n, self.tensorial_size, self.lower, self.triv = n, tensorial_size, True, SO.parse_triv(triv)
        self.k = min(size[-1], size[-2])
        self.transposed = size[-2] < size[-1]
        self.register_buffer("base", torch.empty(*(tensorial_size + (n, n))))
        self._registering = True

    def right_inverse(self, X: Tensor, check_in_manifold: bool = True) -> Tensor:
        if self.__dict__.pop("_registering", False):
            raise NotImplementedError  # registration: keep the (zero) tensor as the unconstrained parameter
        return super().right_inverse(X, check_in_manifold)


def _register_orthogonal(module: nn.Module, name: str, shape: Sequence[int]) -> None:
    """``module.<name>`` (``shape``, ``(..., rows, cols)``) parametrised as geotorch's ``orthogonal`` with ``expm``;
    the unconstrained tensor starts at zero and ``base`` is set by :func:`_set_orthogonal_`."""
    setattr(module, name, nn.Parameter(torch.zeros(*shape)))
    parametrize.register_parametrization(module, name, _Orthogonal(shape, expm), unsafe=True)


@torch.no_grad()
def _set_orthogonal_(module: nn.Module, name: str, base: Tensor) -> None:
    """Start ``module.<name>`` at ``base[..., :k]`` (transposed for wide shapes): ``base`` ``(..., n, n)`` orthogonal
    is written as geotorch's base and the unconstrained tensor set to zero (``expm(0) = I``). No check, no
    decomposition: the callers pass exactly orthogonal matrices."""
    plist = module.parametrizations[name]
    plist[0].base.copy_(base)
    plist.original.zero_()


def _init_orthogonal_(module: nn.Module, name: str) -> None:
    """Haar-distributed start for ``module.<name>`` (geotorch's ``uniform`` sample): a Haar frame completed to an
    orthogonal base (:func:`zoo_scfac.initialization.haar_frame`)."""
    m = module.parametrizations[name][0]
    _set_orthogonal_(module, name, haar_frame(m.tensorial_size, m.n, m.k, dtype=m.base.dtype))


class _OrthogonalTensor(nn.Module):
    """A batch of orthogonal matrices of logical shape ``(..., n, n)``: ``base @ exp(skew)`` (``geotorch.orthogonal``).

    Stored flat, as ``(prod(...), n, n)`` (3-d tensors): ``module.to(memory_format=torch.channels_last)`` converts
    only 4-d and 5-d tensors, and a factor batch has no image layout to convert. :meth:`factors` returns the logical
    shape; state dicts saved with the logical (up to 5-d) shape load unchanged (reshaped on load).
    Starts as a Haar sample unless ``init=False`` (the owner then sets it with :meth:`set_`)."""

    def __init__(self, shape: Sequence[int], init: bool = True) -> None:
        super().__init__()
        if shape[-1] != shape[-2]:
            raise ValueError(f"expected square matrices, got shape {tuple(shape)}")
        self.shape = tuple(int(s) for s in shape)
        n = self.shape[-1]
        _register_orthogonal(self, "weight", (math.prod(self.shape[:-2]), n, n))
        self.register_load_state_dict_pre_hook(_OrthogonalTensor._reshape_loaded)
        if init:
            dtype = self.parametrizations.weight.original.dtype
            self.set_(haar_orthogonal(self.shape, dtype))

    def _reshape_loaded(self, state_dict: dict, prefix: str, *args: Any) -> None:
        """Accept the logical shape (the layout before flat storage) for the unconstrained tensor and the base."""
        flat = self.parametrizations.weight.original.shape
        for key in ("parametrizations.weight.original", "parametrizations.weight.0.base"):
            value = state_dict.get(prefix + key)
            if value is not None and tuple(value.shape) == self.shape:
                state_dict[prefix + key] = value.reshape(flat)

    def base(self) -> Tensor:
        """geotorch's fixed ``base`` as a ``(..., n, n)`` view (writes go to the buffer)."""
        return self.parametrizations.weight[0].base.view(self.shape)

    def set_(self, value: Tensor) -> None:
        """Start at the orthogonal ``value`` ``(..., n, n)`` (``base = value``, skew parameter zero)."""
        _set_orthogonal_(self, "weight", value.reshape(self.parametrizations.weight[0].base.shape))

    def factors(self, dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
        """``(base, skew)`` ``(..., n, n)`` with ``weight = base @ exp(skew)``, in ``dtype`` (default: the parameters')."""
        param = self.parametrizations.weight
        so = param[0]
        dtype = dtype or param.original.dtype
        skew = Skew.frame(param.original.to(dtype), so.lower)
        return so.base.to(dtype).view(self.shape), skew.view(self.shape)


def orthogonal_values(tensors: Sequence[_OrthogonalTensor], dtype: Optional[torch.dtype] = None) -> List[Tensor]:
    """The values of ``tensors`` (all ``n x n``) in ``dtype``, with one batched matrix exponential for all of them."""
    pairs = [t.factors(dtype) for t in tensors]
    n = pairs[0][1].shape[-1]
    skews = torch.cat([skew.reshape(-1, n, n) for _, skew in pairs])
    exps = expm(skews).split([skew.numel() // (n * n) for _, skew in pairs])
    return [base @ e.reshape(base.shape) for (base, _), e in zip(pairs, exps)]


class _EvalCache(nn.Module):
    """Caches a derived weight in eval mode; the cache key is every parameter's and buffer's storage and version.

    The list of those tensors is collected once (walking the submodules costs more than a small convolution on a
    GPU) and collected again after ``load_state_dict``, ``to()`` / ``cuda()`` / ``half()`` and any attribute
    assignment on this module; replacing a Parameter object of a submodule directly is not seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache: Optional[Tensor] = None
        self._cache_key: Optional[Tuple] = None
        self.register_load_state_dict_post_hook(lambda module, keys: module._forget_tensors())

    def _forget_tensors(self) -> None:
        self.__dict__.pop("_key_tensors", None)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in ("_cache", "_cache_key"):
            self.__dict__.pop("_key_tensors", None)
        super().__setattr__(name, value)

    def _apply(self, fn: Callable, recurse: bool = True) -> "_EvalCache":
        self._forget_tensors()
        return super()._apply(fn, recurse)

    def _state_key(self) -> Tuple:
        tensors = self.__dict__.get("_key_tensors")
        if tensors is None:
            tensors = list(self.parameters()) + list(self.buffers())
            self.__dict__["_key_tensors"] = tensors
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)

    def _cached(self, build: Callable[[], Tensor]) -> Tensor:
        if torch.compiler.is_compiling():  # torch.export / torch.compile: the graph rebuilds it from the parameters
            return build()
        if self.training:
            self._cache, self._cache_key = None, None
            return build()
        key = self._state_key()
        if self._cache is None or self._cache_key != key:
            with torch.no_grad():
                self._cache = build()
            self._cache_key = key
        return self._cache


def _single(value: Union[int, Sequence[int]], ndim: int, name: str) -> int:
    """Accept ``k`` or ``(k,) * ndim``; SC-Fac builds square kernels only."""
    if isinstance(value, int):
        return value
    values = tuple(value)
    if len(values) != ndim or len(set(values)) != 1:
        raise ValueError(f"{name} must be an int or {ndim} equal ints (SC-Fac is separable and square), got {value!r}")
    return int(values[0])


class _OrthoConvNd(_EvalCache):
    """Shared implementation of :class:`OrthoConv1d` and :class:`OrthoConv2d` (``ndim`` spatial dims)."""

    ndim: int = 0
    transposed: bool = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Sequence[int]], stride: Union[int, Sequence[int]] = 1,
                 dilation: Union[int, Sequence[int]] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "circular", init: str = "permutation",
                 factor_dtype: Optional[torch.dtype] = torch.float64, order: str = "width-first",
                 padding: str = "same") -> None:
        super().__init__()
        k = _single(kernel_size, self.ndim, "kernel_size")
        r = _single(stride, self.ndim, "stride")
        dil = _single(dilation, self.ndim, "dilation")
        if min(in_channels, out_channels, k, r, dil, groups) < 1:
            raise ValueError(f"channels, kernel_size, stride, dilation and groups must be >= 1; got in={in_channels}, "
                             f"out={out_channels}, kernel={k}, stride={r}, dilation={dil}, groups={groups}")
        if k % r:
            raise ValueError(f"kernel_size {k} must be a multiple of stride {r}: the polyphase construction "
                             f"(Algorithm 2) uses kernel_size / stride taps per dimension")
        if math.gcd(r, dil) > 1:
            raise ValueError(f"stride {r} with dilation {dil} (gcd {math.gcd(r, dil)} > 1) is not supported: the taps "
                             f"then read only the input phases that are multiples of the gcd, so no kernel is orthogonal; "
                             f"stride and dilation together need gcd(stride, dilation) = 1")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must be divisible by groups {groups}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if order not in ORDERS or (self.ndim == 1 and order != ORDERS[0]):
            raise ValueError(f"order must be one of {ORDERS} ({ORDERS[0]!r} for a 1-D layer: one system), got {order!r}")
        if padding not in PADDINGS or (padding == "full" and padding_mode != "zeros"):
            raise ValueError(f"padding must be one of {PADDINGS} ('full' with padding_mode='zeros' only: a circular "
                             f"convolution has no border), got padding={padding!r}, padding_mode={padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation, self.groups = k, r, dil, groups
        self.padding_mode, self.padding, self.order = padding_mode, padding, order
        self.factor_dtype = factor_dtype
        self.taps = k // r
        self.n_left = (self.taps - 1) // 2
        self.n_right = self.taps - 1 - self.n_left
        # the kernel is that of a strided convolution conv_in -> conv_out (its adjoint for a transposed layer)
        self.conv_in, self.conv_out = (out_channels, in_channels) if self.transposed else (in_channels, out_channels)
        self.rows = self.conv_out // groups
        self.cols = self.conv_in // groups * r**self.ndim
        self.width = max(self.rows, self.cols)
        batch = (groups, self.ndim)
        self.q = _OrthogonalTensor(batch + (self.width, self.width), init=False)
        self.u = _OrthogonalTensor(batch + (self.taps - 1, self.width, self.width), init=False) if self.taps > 1 else None
        self.register_buffer("ranks", torch.zeros(batch + (self.taps - 1,), dtype=torch.long))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        total = dil * (k - 1) - (r - 1)
        left = dil * r * self.n_left
        # full: every output with support; the first one reads the first input (left pad `total`), the last one too
        full_right = r * ((total - 1) // r) + dil * (k - 1) + 1 - total
        self._pad = (left, total - left) if padding == "same" else (total, full_right)
        self.reset_parameters(init)

    @torch.no_grad()
    def reset_parameters(self, init: str = "permutation") -> None:
        """Re-initialise as ``Q`` at the kernel centre (Proposition 7.2); ``init`` picks ``Q`` (see :data:`INITS`)."""
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        # Q and the U's are drawn and combined in float64 and rounded once into the (fixed) geotorch bases
        q, perm = _centre(init, (self.groups, self.ndim), self.width, torch.float64)
        self.q.set_(q)
        if self.u is not None:
            ranks = random_ranks(tuple(self.ranks.shape), self.width)
            # only the U^(l), l > 0 (the first n_right) are sampled; U^(-l) = Q U^(l): each pair cancels
            u = haar_orthogonal(tuple(self.ranks.shape[:-1]) + (self.n_right, self.width, self.width), torch.float64)
            base = self.u.base()
            base[..., : self.n_right, :, :] = u
            for i in range(self.n_left):
                ranks[..., self.n_right + i] = ranks[..., i]
                ui = u[..., i, :, :]
                if perm is not None:  # Q = I[perm]: Q U is a row gather, exact
                    qu = torch.gather(ui, -2, perm.unsqueeze(-1).expand_as(ui))
                else:
                    qu = q @ ui
                base[..., self.n_right + i, :, :] = qu
            self.u.parametrizations.weight.original.zero_()
            self.ranks.copy_(ranks)
        if self.bias is not None:
            self.bias.zero_()

    def _systems(self) -> Tensor:
        """1-D paraunitary systems ``(G, ndim, K', C, C)`` in ``factor_dtype`` (else the parameters' dtype)."""
        if self.u is None:
            (q,) = orthogonal_values([self.q], self.factor_dtype)
            empty = q.new_zeros(q.shape[:-2] + (0,) + q.shape[-2:])
            return paraunitary_1d(q, empty, empty)
        q, u = orthogonal_values([self.q, self.u], self.factor_dtype)
        p = projectors(u, self.ranks)
        return paraunitary_1d(q, p[:, :, : self.n_right], p[:, :, self.n_right:])

    def build_kernel(self) -> Tensor:
        """The dense kernel ``(conv_out, conv_in / groups, K, ...)``, differentiable in the parameters: ``(out, in / G,
        ...)`` for a convolution, ``(in, out / G, ...)`` (``conv_transpose``'s layout) for a transposed one."""
        h = self._systems()
        if self.ndim == 2:
            outer, inner = self._outer_inner(h)
            w = separable_2d(outer[..., : self.rows, :], inner[..., :, : self.cols])
            if self.order == "height-first":  # w[..., j, i] = H2[j] H1[i]: put the height tap first
                w = w.transpose(-1, -2)
        else:
            w = h[:, 0, :, : self.rows, : self.cols].permute(0, 2, 3, 1)
        w = w.reshape((self.conv_out, self.cols) + w.shape[3:])
        w = polyphase_to_strided(w, self.conv_in // self.groups, self.stride)
        return w.to(self.q.parametrizations.weight.original.dtype).contiguous()

    def _outer_inner(self, h: Tensor) -> Tuple[Tensor, Tensor]:
        """``(outer, inner)`` 1-D systems ``(G, K', C, C)`` of ``h`` ``(G, 2, K', C, C)`` (axis 0: height ``H1``, axis 1:
        width ``H2``): ``H = outer inner``, so ``inner`` filters the input first and keeps ``S R^2`` columns, ``outer``
        keeps ``T`` rows. ``width-first``: ``H1(z1) H2(z2)``; ``height-first``: ``H2(z2) H1(z1)``."""
        if self.order == "width-first":
            return h[:, 0], h[:, 1]
        return h[:, 1], h[:, 0]

    def kernel(self) -> Tensor:
        """The kernel used by :meth:`forward`: rebuilt in training mode, cached in eval mode."""
        return self._cached(self.build_kernel)

    @property
    def _pad_mode(self) -> str:
        """``padding_mode`` as ``F.pad`` names it."""
        return "circular" if self.padding_mode == "circular" else "constant"

    def pad(self, x: Tensor) -> Tensor:
        """Pad ``x`` so the output has size ``N / stride`` (``same``: circular wraps around, zeros pads zeros) or
        ``N / stride + D (K' - 1)`` (``full``, zeros)."""
        sizes = x.shape[-self.ndim:]
        if any(s % self.stride for s in sizes):
            raise ValueError(f"spatial size {tuple(sizes)} must be divisible by stride {self.stride}")
        return F.pad(x, self._pad * self.ndim, mode=self._pad_mode)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, in, *N)`` -> ``(B, out, *N')``, ``N' = N / stride`` (``padding="same"``) or
        ``N / stride + dilation (kernel_size / stride - 1)`` (``"full"``)."""
        if x.dim() != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, {'N, ' * self.ndim}...) with {self.ndim} spatial dims, "
                             f"got shape {tuple(x.shape)}")
        if self.transposed:
            return self._transposed_forward(x)
        if self.training and self.separable:
            return self.separable_forward(x)
        conv = F.conv2d if self.ndim == 2 else F.conv1d
        return conv(self.pad(x), self.kernel(), self.bias, self.stride, 0, self.dilation, self.groups)

    def _transposed_forward(self, x: Tensor) -> Tensor:
        """``x`` ``(B, in, *M)`` -> ``(B, out, *M')``: the adjoint of the strided convolution ``out -> in`` built from the
        same factors: ``conv_transpose`` (every output with support, ``(M - 1) R + D (K - 1) + 1``), then the adjoint
        of its padding: ``same`` folds the overhang back circularly or crops it (zeros) to ``M' = M R``; ``full``
        keeps it all."""
        conv_t = F.conv_transpose2d if self.ndim == 2 else F.conv_transpose1d
        z = conv_t(x, self.kernel(), None, self.stride, 0, 0, self.groups, self.dilation)
        if self.padding == "same":
            left, right = self._pad
            for dim in range(2, 2 + self.ndim):
                n = z.shape[dim] - left - right
                if self.padding_mode == "zeros":
                    z = z.narrow(dim, left, n)
                else:  # adjoint of circular padding: add the padded copies back onto the entries they copied
                    index = (torch.arange(z.shape[dim], device=z.device) - left) % n
                    z = z.new_zeros(z.shape[:dim] + (n,) + z.shape[dim + 1:]).index_add(dim, index, z)
        if self.bias is not None:
            z = z + self.bias.view((-1,) + (1,) * self.ndim)
        return z

    @property
    def separable(self) -> bool:
        """Whether training applies the two 1-D systems (stride-1 2-D layers where that costs fewer flops)."""
        k = self.kernel_size
        return (self.ndim == 2 and self.stride == 1 and not self.transposed
                and k * (self.rows + self.cols) * self.width < k * k * self.rows * self.cols)

    def separable_forward(self, x: Tensor) -> Tensor:
        """Stride-1 2-D layer as two 1-D convolutions: the inner system, then the outer one (:meth:`_outer_inner`):
        width (``1 x K``, ``H2``) then height (``K x 1``, ``H1``) for ``width-first``, the reverse for ``height-first``.

        ``x``: ``(B, S, H, W)`` -> ``(B, T, H', W')``; the intermediate has ``G C`` channels.
        """
        if self.ndim != 2 or self.stride != 1:
            raise ValueError(f"the separable form needs a stride-1 2-D layer, got ndim={self.ndim}, stride={self.stride}")
        h = self._systems().to(self.q.parametrizations.weight.original.dtype)  # (G, 2, K, C, C)
        outer, inner = self._outer_inner(h)
        g, c = self.groups, self.width
        inner_kernel = inner[..., : self.cols].permute(0, 2, 3, 1).reshape(g * c, self.cols, self.kernel_size)
        outer_kernel = outer[..., : self.rows, :].permute(0, 2, 3, 1).reshape(self.out_channels, c, self.kernel_size)
        width_first = self.order == "width-first"
        z = self._conv_along(x, inner_kernel, None, width=width_first)
        return self._conv_along(z, outer_kernel, self.bias, width=not width_first)

    def _conv_along(self, x: Tensor, kernel: Tensor, bias: Optional[Tensor], width: bool) -> Tensor:
        """Grouped 1-D convolution of ``x`` ``(B, I, H, W)`` along the width (``width``) or the height with
        ``kernel`` ``(O, I / G, K)``, padded along that axis as :meth:`pad` pads it."""
        if width:
            padded = F.pad(x, self._pad + (0, 0), mode=self._pad_mode)
            return F.conv2d(padded, kernel.unsqueeze(-2), bias, 1, 0, (1, self.dilation), self.groups)
        padded = F.pad(x, (0, 0) + self._pad, mode=self._pad_mode)
        return F.conv2d(padded, kernel.unsqueeze(-1), bias, 1, 0, (self.dilation, 1), self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, "
                f"padding_mode={self.padding_mode!r}, padding={self.padding!r}, order={self.order!r}")


class OrthoConv1d(_OrthoConvNd):
    """Orthogonal 1-D convolution (complete factorization, Theorem 7.3). Input ``(B, in, N)``."""

    ndim = 1


class OrthoConv2d(_OrthoConvNd):
    """Orthogonal separable 2-D convolution (SC-Fac, Algorithms 1-2). Input ``(B, in, H, W)``."""

    ndim = 2


class OrthoConvTranspose1d(_OrthoConvNd):
    """Orthogonal transposed strided 1-D convolution (up-sampling, Table 7.1's up-strided row). Input ``(B, in, M)``,
    output ``(B, out, M R)`` (``padding="same"``): the adjoint of the strided :class:`OrthoConv1d` ``out -> in`` with
    the same factors: orthogonal when ``in = out R``, an isometry when ``in < out R``, a co-isometry when
    ``in > out R``; padding as :class:`OrthoConvTranspose2d`."""

    ndim = 1
    transposed = True


class OrthoConvTranspose2d(_OrthoConvNd):
    """Orthogonal transposed strided 2-D convolution (up-sampling ``x`` by ``R`` before a convolution, Table 7.1).

    Input ``(B, in, M, M)`` -> ``(B, out, M R, M R)`` (``padding="same"``) or ``(M - 1) R + D (K - 1) + 1``
    (``"full"``). The layer is the adjoint (``conv_transpose``) of the strided SC-Fac convolution ``out -> in``
    built from the same factors: with circular padding it is orthogonal when ``in = out R^2`` (the inverse of that
    strided convolution), column-orthogonal when ``in < out R^2`` (the adjoint of a co-isometry), row-orthogonal when
    ``in > out R^2``. Its transfer matrix ``H[R](z)`` (the ``R^2`` kernel phases stacked) is the para-conjugate of
    the strided one, paraunitary (Theorem 7.1). ``padding="full"`` (zeros) keeps every output of the linear
    transposed convolution and preserves the norm; ``"same"`` with zeros crops it to ``M R`` (1-Lipschitz).
    Keyword arguments as :class:`OrthoConv2d` (no separable training path: the kernel is built and applied)."""

    ndim = 2
    transposed = True


@torch.no_grad()
def reorthogonalize_(module: nn.Module) -> nn.Module:
    """Re-project every geotorch orthogonal tensor in ``module`` onto the manifold in its current dtype.

    Use after ``module.double()``: geotorch's fixed ``base`` was drawn in float32 and keeps a ~1e-7
    orthogonality error; the polar factor ``U V^T`` of the current value is exact to the new precision.
    """
    for sub in module.modules():
        params = getattr(sub, "parametrizations", None)
        if params is None or "weight" not in params:
            continue
        if not isinstance(params["weight"][0], geotorch.so.SO):
            continue
        u, _, vh = torch.linalg.svd(sub.weight, full_matrices=False)
        sub.weight = u @ vh
    for sub in module.modules():
        if isinstance(sub, _EvalCache):
            sub._cache, sub._cache_key = None, None
    return module


class OrthoLinear(_EvalCache):
    """``y = W x + b`` with ``W`` row- or column-orthogonal (``geotorch.orthogonal``); 1-Lipschitz."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        _register_orthogonal(self, "weight", (out_features, in_features))
        _init_orthogonal_(self, "weight")
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(..., in_features)`` -> ``(..., out_features)``."""
        return F.linear(x, self._cached(lambda: self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
