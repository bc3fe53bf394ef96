"""torch.export, channels-last and the flat storage of the SC-Fac factors (issue 20, item 1)."""

from __future__ import annotations

import pytest
import torch

from zoo_scfac.layers import OrthoConv2d, _OrthoConvNd


def _perturbed(layer: _OrthoConvNd, scale: float = 0.3) -> _OrthoConvNd:
    """Move every parameter off the initial point, so the kernel has all its taps."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("train", [False, True])
def test_export_computes_the_eager_output(train):
    """The exported program rebuilds the kernel from the parameters (no eval cache keyed on data pointers, no
    data-dependent squaring count) and equals eager mode."""
    layer = _perturbed(OrthoConv2d(4, 8, 3, init="uniform")).train(train)
    x = torch.randn(2, 4, 8, 8)
    program = torch.export.export(layer, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "aten.linalg_matrix_exp.default" in targets
    torch.testing.assert_close(program.module()(x), layer(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # a parameter change reaches the exported program: it is not a frozen constant
        layer.q.parametrizations.weight.original.add_(0.1)
    torch.testing.assert_close(program.module()(x), layer(x), rtol=1e-5, atol=1e-5)


def test_factor_tensors_are_stored_flat_and_channels_last_converts():
    layer = _perturbed(OrthoConv2d(4, 4, 5, groups=2, init="uniform")).eval()
    assert all(t.dim() <= 3 for t in list(layer.parameters()) + list(layer.buffers()))
    assert layer.u.shape == (2, 2, 4, 2, 2) and layer.u.parametrizations.weight.original.shape == (16, 2, 2)
    x = torch.randn(2, 4, 8, 8)
    expected = layer(x)
    layer = layer.to(memory_format=torch.channels_last)
    out = layer(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_state_dicts_in_the_logical_layout_still_load():
    """Checkpoints written before the flat storage (factor tensors of shape (G, 2, [K' - 1,] C, C)) load into the
    same kernel."""
    source = _perturbed(OrthoConv2d(6, 6, 3, groups=2, init="uniform"))
    old = {}
    for key, value in source.state_dict().items():
        owner = source.q if key.startswith("q.") else source.u if key.startswith("u.") else None
        old[key] = value.reshape(owner.shape) if owner is not None and "parametrizations" in key else value
    assert old["u.parametrizations.weight.0.base"].shape == (2, 2, 2, 3, 3)
    target = OrthoConv2d(6, 6, 3, groups=2, init="uniform")
    target.load_state_dict(old)
    assert torch.equal(target.build_kernel(), source.build_kernel())
