"""Property-based tests: random small tensor networks with convolutions against the slow reference."""

from __future__ import annotations

import random

import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from .ce_reference import reference_conv_einsum
from zoo.conv_einsum import ConvEinsumError, conv_einsum

ORDINARY = "abcdef"


@st.composite
def networks(draw: st.DrawFn) -> dict:
    n_ops = draw(st.integers(2, 4))
    conv = "".join(draw(st.sampled_from(["h", "hw", "w", "hwd"])))
    subs = [set(draw(st.lists(st.sampled_from(ORDINARY), max_size=3))) for _ in range(n_ops)]
    sizes: list[dict[str, int]] = [dict() for _ in range(n_ops)]
    for c in conv:
        holders = draw(st.lists(st.integers(0, n_ops - 1), min_size=2, max_size=n_ops, unique=True))
        data = min(holders)  # the first operand carrying the letter is its data
        for i in holders:
            subs[i].add(c)
            sizes[i][c] = draw(st.integers(4, 6)) if i == data else draw(st.integers(1, 3))
    ordinary = {c: draw(st.integers(1, 3)) for c in ORDINARY}
    orders = [draw(st.permutations(sorted(s))) for s in subs]
    used = sorted(set().union(*subs) - set(conv))
    out = list(conv) + draw(st.lists(st.sampled_from(used), unique=True)) if used else list(conv)
    out = draw(st.permutations(out))
    eq = ",".join("".join(o) for o in orders) + "->" + "".join(out) + "|" + conv
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    ops = [torch.randn([sizes[i].get(c, ordinary.get(c, 1)) for c in o], generator=gen, dtype=torch.float64)
           for i, o in enumerate(orders)]
    opts = dict(
        stride=draw(st.sampled_from([1, 2])),
        dilation=draw(st.sampled_from([1, 2])),
        padding=draw(st.sampled_from([0, 1, 2, "valid", "full", "same"])),
        padding_mode=draw(st.sampled_from(["zeros", "circular"])),
    )
    if opts["padding"] == "same":
        opts["stride"] = 1
    if opts["padding_mode"] == "circular" and opts["padding"] == "full":
        opts["padding"] = 1
    rng = random.Random(seed)
    path, m = [], n_ops
    while m > 1:
        path.append(tuple(sorted(rng.sample(range(m), 2))))
        m -= 1
    optimize = draw(st.sampled_from(["auto", "greedy", "naive", path]))
    return dict(eq=eq, ops=ops, opts=opts, optimize=optimize)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_random_networks_match_reference(net: dict) -> None:
    try:
        got = conv_einsum(net["eq"], *net["ops"], optimize=net["optimize"], **net["opts"])
    except ConvEinsumError as err:
        assume("leaves no output" not in str(err) and "larger than the data" not in str(err))
        raise
    want = reference_conv_einsum(net["eq"], *net["ops"], **net["opts"])
    torch.testing.assert_close(got, want, msg=f"{net['eq']} {net['opts']} {net['optimize']}")
