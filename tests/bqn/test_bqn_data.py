"""The MNIST loader, the disjoint split and the shift augmentation."""

import pytest
import torch

from zoo_bqn.data import load_mnist_t10k, mnist_split, random_shift


def test_mnist_split_is_disjoint(shared_data):
    x, y = load_mnist_t10k(shared_data / "mnist")
    assert x.shape == (10000, 1, 28, 28) and y.bincount().numel() == 10
    xtr, ytr, xte, yte = mnist_split(8000, seed=0, root=shared_data / "mnist")
    assert xtr.shape[0] == 8000 and xte.shape[0] == 2000
    flat_tr = {hash(r.numpy().tobytes()) for r in xtr.reshape(8000, -1)}
    assert not any(hash(r.numpy().tobytes()) in flat_tr for r in xte[:200].reshape(200, -1))
    with pytest.raises(ValueError, match="n_train"):
        mnist_split(10000, root=shared_data / "mnist")


def test_random_shift_moves_content():
    x = torch.zeros(3, 1, 6, 6)
    x[:, :, 2:4, 2:4] = 1.0
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out.sum((1, 2, 3)), x.sum((1, 2, 3)))
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)
