"""Every family on every device this machine has (CPU always, CUDA when present).

Two checks per family, on one small registry model each:
- float32 on the device agrees with a float64 CPU evaluation of the same weights (catches device-only kernels,
  dtype slips and TF32 being left on);
- one fine-tuning epoch under bfloat16 autocast (``precision="bf16"``, the trainer's default on CUDA) and
  channels-last memory runs, gives a finite loss and changes the weights (catches ops without bf16 kernels,
  e.g. FFTs, and layouts a layer does not expect).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Tuple

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import zoo
from zoo import datasets
from zoo.recipes import TensorImages

from . import DEVICES


@pytest.fixture(autouse=True)
def exact_cuda_matmul():
    """TF32 would make float32 CUDA results differ from float64 by ~1e-3; the checks want true float32."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _mnist(n: int) -> TensorImages:
    images, labels = datasets.mnist()
    return TensorImages(images[:n], labels[:n], (28, 28), [0.1307], [0.3081])


def _cifar(n: int) -> TensorImages:
    images, labels = datasets.cifar10()
    return TensorImages(images[:n], labels[:n], (32, 32), [0.0] * 3, [1.0] * 3)


def _isic(model: torch.nn.Module, n: int):
    from zoo.training.datasets import build_dataset

    return Subset(build_dataset(datasets.isic_dir(), model.pretrained_cfg, train=True, input_size=32), range(n))


def _clips(tmp_path) -> str:
    path = tmp_path / "clips.npz"
    np.savez(path, frames=np.random.default_rng(0).integers(0, 255, size=(4, 6, 16, 16), dtype=np.uint8))
    return str(path)


# name -> (create kwargs, a float input for the forward check, fine-tuning data maker, fine-tuning options)
CASES: Dict[str, Tuple[Dict[str, Any], Callable[[], torch.Tensor], Callable, Dict[str, Any]]] = {
    "lenet5-mcp-5pct": ({}, lambda: torch.randn(2, 1, 28, 28), lambda m, tmp: _mnist(8), {}),
    "sc-fac-wrn10": ({"widen_factor": 1, "kernel_size": 3}, lambda: torch.randn(2, 3, 32, 32),
                     lambda m, tmp: _cifar(8), {}),
    "armaunet-isic-small": ({}, lambda: torch.randn(1, 3, 32, 48), lambda m, tmp: _isic(m, 4), {}),
    "convttlstm-mnist-small": ({}, lambda: torch.rand(1, 6, 1, 16, 16), lambda m, tmp: _clips(tmp),
                               {"input_frames": 3, "future_frames": 3}),
    "bqn-cnn-mnist": ({}, lambda: torch.randn(2, 1, 28, 28), lambda m, tmp: _mnist(8), {}),
    "sc-fac-resflow-mnist-small": ({}, lambda: torch.rand(2, 1, 28, 28), lambda m, tmp: _mnist(8), {}),
}


def _forward(model: torch.nn.Module, name: str, x: torch.Tensor):
    if name.startswith("convttlstm"):
        return model(x, future_frames=2)
    return model(x)


def _first_tensor(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_on_device_matches_float64_on_cpu(name: str, device: str):
    kwargs, make_input, _, _ = CASES[name]
    torch.manual_seed(0)
    model = zoo.create(name, **kwargs).eval()
    x = make_input()
    with torch.no_grad():
        reference = _first_tensor(_forward(copy.deepcopy(model).double(), name, x.double()))
        got = _first_tensor(_forward(model.to(device), name, x.to(device))).cpu()
    assert got.dtype == torch.float32 and got.shape == reference.shape
    scale = reference.abs().max().item()
    torch.testing.assert_close(got.double(), reference, rtol=2e-4, atol=2e-4 * max(scale, 1.0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_one_bf16_channels_last_epoch_trains(name: str, device: str, tmp_path):
    kwargs, _, make_data, options = CASES[name]
    torch.manual_seed(0)
    model = zoo.create(name, **kwargs)
    before = [p.detach().clone() for p in model.parameters()]
    channels_last = not name.startswith(("convttlstm", "sc-fac-resflow"))
    result = zoo.finetune(model, make_data(model, tmp_path), epochs=1, batch_size=4, lr=1e-3, progress=False,
                          scheduler="none", device=device, precision="bf16", channels_last=channels_last,
                          **options)
    loss = result.history[0]["train_loss"]
    assert np.isfinite(loss)
    after = [p.detach().cpu() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(after, before)), "no parameter changed"
    assert all(torch.isfinite(p).all() for p in after)
