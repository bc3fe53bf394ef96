"""Fine-tuning through zoo.finetune keeps each family's guarantee: SC-Fac stays orthogonal, ARMA stays stable."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

import zoo
from zoo import datasets
from zoo.recipes import TensorImages


def test_scfac_stays_orthogonal_after_hinge_finetuning():
    from zoo_scfac.layers import OrthoConv2d
    from zoo_scfac.spectral import circular_singular_values, orthogonality_error

    model = zoo.create("sc-fac-wrn10", widen_factor=1, kernel_size=3)
    images, labels = datasets.cifar10()
    data = TensorImages(images[:32], labels[:32], (32, 32), [0.0] * 3, [1.0] * 3)
    before = {n: m.kernel().detach().clone() for n, m in model.named_modules() if isinstance(m, OrthoConv2d)}
    zoo.finetune(model, data, epochs=1, lr=0.05, batch_size=32, progress=False, scheduler="none")
    convs = {n: m for n, m in model.named_modules() if isinstance(m, OrthoConv2d)}
    # (the trainer moves the model to CUDA when there is one: compare on the CPU)
    assert convs and any(not torch.allclose(convs[n].kernel().cpu(), before[n]) for n in convs)  # it did train
    checked = 0
    for name, conv in convs.items():
        kernel = conv.kernel().detach().double()
        if conv.stride != 1 or kernel.shape[0] != kernel.shape[1] or getattr(conv, "groups", 1) != 1:
            continue
        assert orthogonality_error(circular_singular_values(kernel, 8, getattr(conv, "dilation", 1))) < 1e-5, name
        checked += 1
    assert checked >= len(convs) // 2


def test_arma_stays_stable_after_aggressive_finetuning():
    from zoo_arma.layer import ARMAConv2d

    model = zoo.create("armaunet-isic-small")
    from zoo.training.datasets import build_dataset

    full = build_dataset(datasets.isic_dir(), model.pretrained_cfg, train=True, input_size=32)
    zoo.finetune(model, Subset(full, range(8)), epochs=2, lr=1.0, optimizer="sgd", batch_size=4, progress=False,
                 scheduler="none")
    layers = [m for m in model.modules() if isinstance(m, ARMAConv2d)]
    assert layers
    for layer in layers:
        response = layer.ar_transfer((32, 32)).abs()
        assert torch.isfinite(response).all() and response.min() > 1e-3
    out = model(torch.randn(2, 3, 32, 32, device=layers[0].weight.device) * 100)
    assert torch.isfinite(out).all()


def test_video_finetuning_runs_scheduled_sampling_through_the_epoch_hook(tmp_path):
    import numpy as np

    clips = tmp_path / "clips.npz"
    rng = np.random.default_rng(0)
    np.savez(clips, frames=rng.integers(0, 255, size=(4, 6, 16, 16), dtype=np.uint8))
    model = zoo.create("convlstm-mnist-small", hidden_channels=[4, 4, 4, 4])
    result = zoo.finetune(model, clips, clips, epochs=2, batch_size=2, lr=1e-3, input_frames=3, future_frames=3,
                          progress=False, scheduler="none")
    schedule = model.scheduled_sampling
    assert schedule.best == min(row["val_loss"] for row in result.history)
    assert model.teacher_forcing_ratio == schedule.ratio == 1.0  # no plateau within patience: still teacher forcing


def test_flow_finetunes_by_bits_per_dim_and_stays_invertible():
    model = zoo.create("sc-fac-resflow-mnist-small")
    images, labels = datasets.mnist()
    data = TensorImages(images[:16], labels[:16], (28, 28), [0.0], [1.0])  # pixels in [0, 1]
    result = zoo.finetune(model, data, data, epochs=1, lr=1e-3, batch_size=8, progress=False, scheduler="none")
    assert 0.0 < result.history[0]["train_loss"] < 20.0  # bits per dimension of 8-bit images
    model.eval()
    x = data.x[:2].to(next(model.parameters()).device)
    z, _ = model(x)
    torch.testing.assert_close(model.inverse(z), x, atol=1e-4, rtol=0)


def test_family_training_state_goes_through_the_checkpoint(rgb_toy, colour_data, tmp_path, monkeypatch):
    """A family's run state is saved with each checkpoint and given back on resume; a state a checkpoint could
    not load safely (an arbitrary object) is the plugin's error, named, and no checkpoint is written."""
    import dataclasses

    from zoo import plugins
    from zoo.errors import PluginError

    family = plugins.get_family("toy")
    loaded = []
    counting = dataclasses.replace(family, training_state=lambda m: {"epochs_seen": len(loaded) + 7},
                                   load_training_state=lambda m, state: loaded.append(dict(state)))
    monkeypatch.setattr(plugins, "get_family", lambda name: counting)
    train, val = colour_data
    options = dict(batch_size=8, progress=False, scheduler="none", output_dir=str(tmp_path / "run"))
    zoo.finetune(rgb_toy, train, val, epochs=1, **options)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["family_state"] == {"epochs_seen": 7}
    with pytest.warns(RuntimeWarning, match="changed options: epochs 1 -> 2"):  # a longer schedule, said so
        zoo.finetune(rgb_toy, train, val, epochs=2, resume=True, **options)
    assert loaded == [{"epochs_seen": 7}]

    broken = dataclasses.replace(family, training_state=lambda m: {"schedule": object()})
    monkeypatch.setattr(plugins, "get_family", lambda name: broken)
    with pytest.raises(PluginError, match=r"family 'toy': training_state .*state\['schedule'\] is a object"):
        zoo.finetune(rgb_toy, train, val, epochs=1, output_dir=str(tmp_path / "other"), batch_size=8,
                     progress=False, scheduler="none")
    assert not (tmp_path / "other" / "checkpoint.pt").exists()


IN_REPO_FAMILIES = {"arma": "armaunet-isic-small", "bqn": "bqn-mlp-mnist", "convttlstm": "convlstm-mnist-small",
                    "sc-fac": "sc-fac-wrn10-1-cifar10-small", "tnn": "lenet5-mcp-5pct"}


@pytest.mark.parametrize("family_name", sorted(IN_REPO_FAMILIES))
def test_every_family_has_the_same_api_shape(family_name):
    """The rule of docs/plugins.md ("One API shape"): package ``zoo_<name without hyphens>`` exporting its layer and
    network classes from ``__init__``; builder ``K`` is ``build_K``; snake_case summary keys."""
    import importlib
    import re

    from torch import nn

    from zoo import plugins

    record = next(r for r in plugins.records() if r.name == family_name)
    assert record.package == "zoo_" + family_name.replace("-", "")
    package = importlib.import_module(record.package)
    exported = {name: getattr(package, name) for name in package.__all__ if name != "__version__"}
    assert sorted(dir(package)) == sorted(package.__all__)
    modules = [v for v in exported.values() if isinstance(v, type) and issubclass(v, nn.Module)]
    assert len(modules) >= 2, f"{record.package} exports no layer and network classes: {sorted(exported)}"
    family = plugins.get_family(family_name)
    for key, builder in family.builders.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", key) and builder.__name__ == f"build_{key}", (key, builder.__name__)
    model_name = IN_REPO_FAMILIES[family_name]
    rows = family.summary(zoo.create(model_name), zoo.model_info(model_name))
    bad = [key for key in rows if not re.fullmatch(r"[a-z][a-z0-9_]*", key)]
    assert not bad, f"{family_name}: summary keys must be snake_case: {bad}"


def test_every_family_field_is_documented_in_the_plugin_guide():
    import dataclasses
    import re
    from pathlib import Path

    from zoo.family import Family

    guide = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", guide, flags=re.M))
    assert {f.name for f in dataclasses.fields(Family)} <= documented
    assert all(f"{f.name}:" in Family.__doc__ or f.name in Family.__doc__ for f in dataclasses.fields(Family))
