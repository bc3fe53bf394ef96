"""Export of the MAP / a sampled network as a packed deterministic QNN."""

import math

import pytest
import torch

from zoo_bqn.layers import BayesWeighted, realise
from zoo_bqn.models import bqn_cnn, bqn_mlp
from zoo_bqn.quantized import pack_indices, storage_bits, unpack_indices


@pytest.mark.parametrize("bits, high", [(1, 2), (2, 3), (2, 4), (4, 16), (8, 256)])
def test_pack_roundtrip(bits, high):
    idx = torch.randint(0, high, (3, 7, 5), generator=torch.Generator().manual_seed(bits))
    packed = pack_indices(idx, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(idx.numel() * bits / 8)
    assert torch.equal(unpack_indices(packed, bits, idx.shape), idx)
    for bad in (2 ** bits, -1):
        with pytest.raises(ValueError, match="indices must lie"):
            pack_indices(torch.tensor([bad]), bits)


def test_storage_bits():
    assert [storage_bits(d) for d in (2, 3, 4, 5, 16, 17)] == [1, 2, 2, 4, 4, 8]


def _random_posterior(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BayesWeighted):
                m.logits.copy_(torch.randn(m.logits.shape, generator=g))
    return model


@pytest.mark.parametrize("make", [
    lambda: bqn_mlp(num_classes=4, img_size=6, hidden=(7, 5)),
    lambda: bqn_mlp(num_classes=3, img_size=6, hidden=(9,), weight_levels="quaternary", act_levels="ternary"),
    lambda: bqn_cnn(num_classes=5, img_size=8, channels=(3, 4), kernel_size=3, residual=True,
                    weight_levels="ternary", act_levels="ternary"),
])
def test_export_reproduces_map_bit_for_bit(make):
    torch.manual_seed(0)
    model = _random_posterior(make(), seed=1).eval()
    x = torch.randn(6, 1, 6 if model.features[0].__class__.__name__ == "Flatten" else 8,
                    6 if model.features[0].__class__.__name__ == "Flatten" else 8)
    qnn = model.export("map")
    with torch.no_grad():
        assert torch.equal(qnn(x), model(x, mode="map"))
    # size: packed bits per weight + the float32 softmax scale
    d = len(next(m for m in model.modules() if isinstance(m, BayesWeighted)).level_values)
    layers = [m for m in model.modules() if isinstance(m, BayesWeighted)]
    expected = sum(math.ceil(m.num_weights() * storage_bits(d) / 8) for m in layers) + 4
    assert qnn.size_bytes() == expected and qnn.num_weights() == model.num_weights()
    assert not any(p.is_floating_point() and p.requires_grad for p in qnn.parameters())


def test_sampled_export_matches_one_mc_sample():
    torch.manual_seed(0)
    model = _random_posterior(bqn_mlp(num_classes=3, img_size=4, hidden=(5,)), seed=2).eval()
    x = torch.randn(4, 1, 4, 4)
    qnn = model.export("sample", generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        mc1 = model(x, mode="mc", samples=1, generator=torch.Generator().manual_seed(7))
        assert torch.equal(qnn(x), mc1)
    with pytest.raises(ValueError, match="mode must be"):
        realise(model, "mean")


def test_sampling_frequencies_match_posterior():
    layer = bqn_mlp(num_classes=2, img_size=1, hidden=(1,), weight_levels="ternary").head
    with torch.no_grad():
        layer.logits.copy_(torch.log(torch.tensor([[[0.2, 0.5, 0.3]]])).expand(2, 1, 3))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([layer.sample_indices(g) for _ in range(4000)]).reshape(-1)
    freq = torch.bincount(draws, minlength=3).double() / draws.numel()
    assert torch.allclose(freq, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), atol=0.02)
