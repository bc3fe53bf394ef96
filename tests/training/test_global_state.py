"""Fine-tuning leaves process-wide torch settings as it found them."""

from __future__ import annotations

import torch

import zoo
from zoo import datasets
from zoo.recipes import TensorImages


def test_finetune_keeps_the_torch_einsum_strategy_and_einsum_keeps_working():
    before = torch.backends.opt_einsum.strategy
    images, labels = datasets.mnist()
    data = TensorImages(images[:8], labels[:8], (28, 28), [0.1307], [0.3081])
    zoo.finetune(zoo.create("lenet5"), data, epochs=1, batch_size=4, progress=False, scheduler="none")
    assert torch.backends.opt_einsum.strategy == before == "auto"
    # timm.optim's import sets "auto-hq", under which torch.einsum raises on this valid equation
    operands = [torch.randn(2, 3, 4), torch.randn(4, 5), torch.randn(5, 6), torch.randn(6, 7), torch.randn(7, 8),
                torch.randn(8, 9)]
    got = torch.einsum("ijk,kl,lm,mn,no,op->ip", *operands)
    expected = operands[0].sum(1)
    for m in operands[1:]:
        expected = expected @ m
    torch.testing.assert_close(got, expected)
