"""Orthogonal layers: SC-Fac convolutions (Eq. 7.3, Algorithms 1 and 2, Table 7.1) and an orthogonal linear map.

``OrthoConv2d(S, T, K, stride=R, dilation=D, groups=G)`` builds, for every group, a ``C x C``
paraunitary system with ``K' = K / R`` taps per spatial dimension (``C = max(T/G, S R^2 / G)``),
keeps ``T/G`` rows and ``S R^2 / G`` columns, reshapes it to a stride-``R`` kernel (polyphase,
Algorithm 2) and concatenates the groups. With circular padding the layer is

* orthogonal (``||conv(x)|| = ||x||`` and invertible) when ``T = S R^2``;
* an isometry (column-orthogonal) when ``T > S R^2``;
* a co-isometry (row-orthogonal: all singular values 1, ``T N`` of them) when ``T < S R^2``.

Dilation up-samples the kernel (``H(z^D)``, Table 7.1) and keeps these properties. Zero padding
truncates the circular operator, so it is only 1-Lipschitz. In ``eval()`` mode the dense kernel is
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
    """A batched orthogonal tensor ``weight`` of shape ``(..., n, n)``: ``base @ exp(skew)`` (``geotorch.orthogonal``).

    Starts as a Haar sample unless ``init=False`` (the owner then sets it with :meth:`set_`)."""

    def __init__(self, shape: Sequence[int], init: bool = True) -> None:
        super().__init__()
        if shape[-1] != shape[-2]:
            raise ValueError(f"expected square matrices, got shape {tuple(shape)}")
        _register_orthogonal(self, "weight", shape)
        if init:
            dtype = self.parametrizations.weight.original.dtype
            _set_orthogonal_(self, "weight", haar_orthogonal(tuple(shape), dtype))

    def set_(self, value: Tensor) -> None:
        """Start at the orthogonal ``value`` (``base = value``, skew parameter zero)."""
        _set_orthogonal_(self, "weight", value)

    def factors(self, dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
        """``(base, skew)`` with ``weight = base @ exp(skew)``, in ``dtype`` (default: the parameters' dtype)."""
        param = self.parametrizations.weight
        so = param[0]
        dtype = dtype or param.original.dtype
        return so.base.to(dtype), Skew.frame(param.original.to(dtype), so.lower)


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

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Sequence[int]], stride: Union[int, Sequence[int]] = 1,
                 dilation: Union[int, Sequence[int]] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "circular", init: str = "permutation",
                 factor_dtype: Optional[torch.dtype] = torch.float64) -> None:
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
        if r > 1 and dil > 1:
            raise ValueError(f"stride {r} together with dilation {dil} is not supported (Table 7.1 covers strided or "
                             f"dilated convolutions, not both)")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must be divisible by groups {groups}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation, self.groups = k, r, dil, groups
        self.padding_mode = padding_mode
        self.factor_dtype = factor_dtype
        self.taps = k // r
        self.n_left = (self.taps - 1) // 2
        self.n_right = self.taps - 1 - self.n_left
        self.rows = out_channels // groups
        self.cols = in_channels // groups * r**self.ndim
        self.width = max(self.rows, self.cols)
        batch = (groups, self.ndim)
        self.q = _OrthogonalTensor(batch + (self.width, self.width), init=False)
        self.u = _OrthogonalTensor(batch + (self.taps - 1, self.width, self.width), init=False) if self.taps > 1 else None
        self.register_buffer("ranks", torch.zeros(batch + (self.taps - 1,), dtype=torch.long))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        total = dil * (k - 1) - (r - 1)
        left = dil * r * self.n_left
        self._pad = (left, total - left)
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
            base = self.u.parametrizations.weight[0].base
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
        """The dense kernel ``(out, in / groups, K, ...)``, differentiable in the parameters."""
        h = self._systems()
        if self.ndim == 2:
            w = separable_2d(h[:, 0, :, : self.rows, :], h[:, 1, :, :, : self.cols])
        else:
            w = h[:, 0, :, : self.rows, : self.cols].permute(0, 2, 3, 1)
        w = w.reshape((self.out_channels, self.cols) + w.shape[3:])
        w = polyphase_to_strided(w, self.in_channels // self.groups, self.stride)
        return w.to(self.q.parametrizations.weight.original.dtype).contiguous()

    def kernel(self) -> Tensor:
        """The kernel used by :meth:`forward`: rebuilt in training mode, cached in eval mode."""
        return self._cached(self.build_kernel)

    @property
    def _pad_mode(self) -> str:
        """``padding_mode`` as ``F.pad`` names it."""
        return "circular" if self.padding_mode == "circular" else "constant"

    def pad(self, x: Tensor) -> Tensor:
        """Pad ``x`` so the output has size ``input / stride`` (circular wraps around, zeros pads zeros)."""
        sizes = x.shape[-self.ndim:]
        if any(s % self.stride for s in sizes):
            raise ValueError(f"spatial size {tuple(sizes)} must be divisible by stride {self.stride}")
        return F.pad(x, self._pad * self.ndim, mode=self._pad_mode)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, in, *spatial)`` -> ``(B, out, *spatial / stride)``."""
        if x.dim() != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, {'N, ' * self.ndim}...) with {self.ndim} spatial dims, "
                             f"got shape {tuple(x.shape)}")
        if self.training and self.separable:
            return self.separable_forward(x)
        conv = F.conv2d if self.ndim == 2 else F.conv1d
        return conv(self.pad(x), self.kernel(), self.bias, self.stride, 0, self.dilation, self.groups)

    @property
    def separable(self) -> bool:
        """Whether training applies the two 1-D systems (stride-1 2-D layers where that costs fewer flops)."""
        k = self.kernel_size
        return self.ndim == 2 and self.stride == 1 and k * (self.rows + self.cols) * self.width < k * k * self.rows * self.cols

    def separable_forward(self, x: Tensor) -> Tensor:
        """Stride-1 2-D layer as a width (``1 x K``, ``H2``) then a height (``K x 1``, ``H1``) convolution.

        ``x``: ``(B, S, H, W)`` -> ``(B, T, H, W)``; the intermediate has ``G C`` channels.
        """
        if self.ndim != 2 or self.stride != 1:
            raise ValueError(f"the separable form needs a stride-1 2-D layer, got ndim={self.ndim}, stride={self.stride}")
        h = self._systems().to(self.q.parametrizations.weight.original.dtype)  # (G, 2, K, C, C)
        g, k, c = self.groups, self.kernel_size, self.width
        width_kernel = h[:, 1, :, :, : self.cols].permute(0, 2, 3, 1).reshape(g * c, self.cols, 1, k)
        height_kernel = h[:, 0, :, : self.rows, :].permute(0, 2, 3, 1).reshape(self.out_channels, c, k, 1)
        z = F.conv2d(F.pad(x, self._pad + (0, 0), mode=self._pad_mode), width_kernel, None, 1, 0, (1, self.dilation), g)
        return F.conv2d(F.pad(z, (0, 0) + self._pad, mode=self._pad_mode), height_kernel, self.bias, 1, 0,
                        (self.dilation, 1), g)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, "
                f"padding_mode={self.padding_mode!r}")


class OrthoConv1d(_OrthoConvNd):
    """Orthogonal 1-D convolution (complete factorization, Theorem 7.3). Input ``(B, in, N)``."""

    ndim = 1


class OrthoConv2d(_OrthoConvNd):
    """Orthogonal separable 2-D convolution (SC-Fac, Algorithms 1-2). Input ``(B, in, H, W)``."""

    ndim = 2


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
