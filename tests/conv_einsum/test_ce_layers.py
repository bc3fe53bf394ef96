"""Factorized convolution layers: conv_einsum on every path equals reconstruct-the-kernel-then-F.conv2d."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from .ce_paths import all_paths, some_paths
from .ce_reference import reference_conv_einsum
from zoo.conv_einsum import conv_einsum

N, S1, S2, T1, T2, H, W, K = 2, 2, 3, 3, 2, 6, 5, 3
R = 2


def rnd(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _layers(gen: torch.Generator):
    """(name, equation, x, factors, kernel builder) with kernel W[t, s, kh, kw]."""
    s, t = S1 * S2, T1 * T2
    x = rnd(gen, N, s, H, W)
    xr = x.reshape(N, S1, S2, H, W)

    def reshaped(w6: torch.Tensor) -> torch.Tensor:  # [u, v, x, y, h, w] -> [t, s, h, w]
        return w6.reshape(t, s, *w6.shape[-2:])

    cp = [rnd(gen, R, t), rnd(gen, R, s), rnd(gen, R, K), rnd(gen, R, K - 1)]
    tk = [rnd(gen, t, R), rnd(gen, s, R + 1), rnd(gen, K, 2), rnd(gen, K, 2), rnd(gen, R, R + 1, 2, 2)]
    tt = [rnd(gen, t, R), rnd(gen, R, s, R + 1), rnd(gen, R + 1, K, R), rnd(gen, R, K)]
    tr = [rnd(gen, R, t, R + 1), rnd(gen, R + 1, s, R), rnd(gen, R, K, 2), rnd(gen, 2, K, R)]
    rcp = [rnd(gen, R, T1, S1), rnd(gen, R, T2, S2), rnd(gen, R, K, K)]
    rtt = [rnd(gen, T1, S1, R), rnd(gen, R, T2, S2, R + 1), rnd(gen, R + 1, K, K)]
    rtr = [rnd(gen, 2, T1, S1, R), rnd(gen, R, T2, S2, R + 1), rnd(gen, R + 1, K, K, 2)]
    rtk = [rnd(gen, T1, 2), rnd(gen, T2, 2), rnd(gen, S1, 2), rnd(gen, S2, 2), rnd(gen, 2, 2, 2, 2, K, K)]
    return [
        ("cp", "nshw,rt,rs,rh,rw->nthw|hw", x, cp, lambda f: torch.einsum("rt,rs,rh,rw->tshw", *f)),
        ("tucker", "nshw,tp,sq,hu,wv,pquv->nthw|hw", x, tk, lambda f: torch.einsum("tp,sq,hu,wv,pquv->tshw", *f)),
        ("tt", "nshw,ta,asb,bhc,cw->nthw|hw", x, tt, lambda f: torch.einsum("ta,asb,bhc,cw->tshw", *f)),
        ("tr", "nshw,dta,asb,bhc,cwd->nthw|hw", x, tr, lambda f: torch.einsum("dta,asb,bhc,cwd->tshw", *f)),
        ("rcp", "nxyhw,rux,rvy,rhw->nuvhw|hw", xr, rcp,
         lambda f: reshaped(torch.einsum("rux,rvy,rhw->uvxyhw", *f))),
        ("rtt", "nxyhw,uxa,avyb,bhw->nuvhw|hw", xr, rtt,
         lambda f: reshaped(torch.einsum("uxa,avyb,bhw->uvxyhw", *f))),
        ("rtr", "nxyhw,cuxa,avyb,bhwc->nuvhw|hw", xr, rtr,
         lambda f: reshaped(torch.einsum("cuxa,avyb,bhwc->uvxyhw", *f))),
        ("rtucker", "nxyhw,up,vq,xi,yj,pqijhw->nuvhw|hw", xr, rtk,
         lambda f: reshaped(torch.einsum("up,vq,xi,yj,pqijhw->uvxyhw", *f))),
    ]


LAYER_NAMES = ["cp", "tucker", "tt", "tr", "rcp", "rtt", "rtr", "rtucker"]
OPTIONS = [dict(stride=1, padding=0), dict(stride=2, padding=1), dict(padding="same", dilation=2)]


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_every_path_matches_reconstruct_then_conv(name: str) -> None:
    gen = torch.Generator().manual_seed(LAYER_NAMES.index(name))
    _, eq, x, factors, build = next(layer for layer in _layers(gen) if layer[0] == name)
    kernel = build(factors)
    n_ops = 1 + len(factors)
    for k, path in enumerate(some_paths(n_ops, 60 if n_ops <= 5 else 30)):
        opts = OPTIONS[k % len(OPTIONS)]
        want = F.conv2d(x.reshape(N, -1, H, W), kernel, **opts)
        got = conv_einsum(eq, x, *factors, optimize=path, **opts)
        torch.testing.assert_close(got.reshape(want.shape), want, msg=f"{name} path={path} {opts}")
    for optimize in ("auto", "optimal", "greedy", "naive"):
        want = F.conv2d(x.reshape(N, -1, H, W), kernel, stride=2, padding=1)
        got = conv_einsum(eq, x, *factors, optimize=optimize, stride=2, padding=1)
        torch.testing.assert_close(got.reshape(want.shape), want)


def test_composed_kernels_every_path() -> None:
    """Interleaved group convolution (eq. 3.3): two kernels along the same letters compose."""
    gen = torch.Generator().manual_seed(7)
    x, k1, k2 = rnd(gen, 2, 2, 3, 7, 6), rnd(gen, 2, 2, 2, 3), rnd(gen, 3, 2, 3, 2)
    eq = "bfshw,fghw,sthw->bgthw|hw"
    for k, path in enumerate(all_paths(3)):
        for opts in (dict(padding=1, stride=2), dict(padding="same", padding_mode="circular"),
                     dict(padding="full", dilation=2), dict(stride=[2, 1], padding={"h": (2, 0)})):
            got = conv_einsum(eq, x, k1, k2, optimize=path, **opts)
            torch.testing.assert_close(got, reference_conv_einsum(eq, x, k1, k2, **opts), msg=f"{path} {opts}")
    # explicit dense kernel: the composed kernel is the full (polynomial) convolution of the two kernels
    keff = torch.zeros(2, 2, 3, 2, 4, 4, dtype=torch.float64)  # f g s t h w
    for a, b, c, d in itertools.product(range(2), range(3), range(3), range(2)):
        keff[..., a + c, b + d] += torch.einsum("fg,st->fgst", k1[:, :, a, b], k2[:, :, c, d])
    weight = keff.permute(1, 3, 0, 2, 4, 5).reshape(4, 6, 4, 4)
    got = conv_einsum(eq, x, k1, k2, padding=1, stride=2)
    want = F.conv2d(x.reshape(2, 6, 7, 6), weight, padding=1, stride=2)
    torch.testing.assert_close(got.reshape(want.shape), want)
