"""conv_einsum without convolution letters must equal torch.einsum."""

from __future__ import annotations

import json
import random
import string

import pytest
import torch

from zoo.conv_einsum import conv_einsum


def _operands(equation: str, dims: dict[str, int], gen: torch.Generator) -> list[torch.Tensor]:
    lhs = equation.split("->")[0]
    return [torch.randn([dims[c] for c in sub], generator=gen, dtype=torch.float64) for sub in lhs.split(",")]


def _equations(shared_data):
    folder = shared_data / "opt_einsum_equations"
    eqs = [line.strip() for line in (folder / "equations.txt").read_text().splitlines() if line.strip()]
    return eqs, json.loads((folder / "dims.json").read_text())


def test_opt_einsum_equation_list(shared_data) -> None:
    eqs, dims = _equations(shared_data)
    assert len(eqs) == 70
    gen = torch.Generator().manual_seed(0)
    for eq in eqs:
        ops = _operands(eq, dims, gen)
        for optimize in ("auto", "naive"):
            got = conv_einsum(eq, *ops, optimize=optimize)
            want = torch.einsum(eq, *ops)
            assert got.shape == want.shape, (eq, optimize)
            torch.testing.assert_close(got, want, msg=f"{eq} optimize={optimize}")


@pytest.mark.parametrize(
    "eq",
    ["ii->i", "ii", "iij,jk->ik", "ij,ij,ij->", "a,a,a,a,a->", ",a->a", ",->", "ab->ba", "abc->", "ab,bc",
     "ba,ab", "Ba,b", "ijk,kl,lm,mn,no,op->ip", "aab,bcc,cdd,de->ae", "ab,cd,ef->fedcba"],
)
def test_special_equations(eq: str) -> None:
    gen = torch.Generator().manual_seed(1)
    dims = {c: 2 + (i % 3) for i, c in enumerate(string.ascii_letters)}
    ops = _operands(eq, dims, gen)
    torch.testing.assert_close(conv_einsum(eq, *ops), torch.einsum(eq, *ops))


def test_52_letters() -> None:
    letters = string.ascii_letters
    gen = torch.Generator().manual_seed(2)
    a = torch.randn([1] * 26 + [2] * 26, generator=gen)
    b = torch.randn([2] * 26, generator=gen)
    eq = f"{letters},{letters[26:]}->{letters[:26]}"
    torch.testing.assert_close(conv_einsum(eq, a, b), torch.einsum(eq, a, b))


def _random_equation(rng: random.Random) -> tuple[str, dict[str, int]]:
    letters = rng.sample(string.ascii_letters, rng.randint(2, 7))
    n_ops = rng.randint(1, 6)
    subs = ["".join(rng.choice(letters) for _ in range(rng.randint(0, 4))) for _ in range(n_ops)]
    used = sorted(set("".join(subs)))
    out = "".join(rng.sample(used, rng.randint(0, len(used))))
    dims = {c: rng.randint(1, 3) for c in letters}
    return ",".join(subs) + "->" + out, dims


def test_random_equations_against_torch_einsum() -> None:
    rng = random.Random(3)
    gen = torch.Generator().manual_seed(3)
    for _ in range(150):
        eq, dims = _random_equation(rng)
        ops = _operands(eq, dims, gen)
        for optimize in ("optimal", "greedy"):
            torch.testing.assert_close(conv_einsum(eq, *ops, optimize=optimize), torch.einsum(eq, *ops),
                                       msg=f"{eq} {optimize}")
