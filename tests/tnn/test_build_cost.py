"""A random tensorial build never fits (issue 17): ALS / SVD-based starts run only when dense weights are given
(``init="decomp"``). Checked by making every fit entry point and every decomposition raise, not by timing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import zoo
import zoo_tnn.decompositions.svdinit as svdinit
import zoo_tnn.fit as fit
from zoo_tnn.tensorize import tensorize

# one registry model per (backbone, decomposition) kind: CP, Tucker, TT, TR, SVD and the reshaped m-variants, and a
# -all name (its layer-rate search builds networks, never fits)
MODELS = ["lenet5-mcp-5pct", "resnet32-cp-5pct", "resnet32-tk-5pct", "resnet32-tt-5pct", "resnet32-svd-5pct",
          "resnet32-mcp-5pct", "resnet32-mtk-5pct", "resnet32-mtt-5pct", "resnet50-tr-1pct", "resnet50-mtr-1pct",
          "wrn28_10-cp-1pct", "resnet32-mtt-5pct-all"]


class Fitted(AssertionError):
    pass


@pytest.fixture
def no_fits(monkeypatch):
    """Every fit entry point and every matrix decomposition raises; returns the list of attempted calls."""
    attempts = []

    def refuse(label):
        def raiser(*args, **kwargs):
            attempts.append(label)
            raise Fitted(f"{label} called while building")
        return raiser

    for owner, name in [(fit, "fit_network"), (fit, "als"), (svdinit, "structured_init"), (svdinit, "train_init"),
                        (svdinit, "ring_init"), (svdinit, "tucker_init"), (svdinit, "cp_init"),
                        (torch.linalg, "svd"), (torch.linalg, "svdvals"), (torch.linalg, "qr"), (torch.linalg, "eig"),
                        (torch.linalg, "eigh"), (torch.linalg, "lstsq"), (torch.linalg, "solve"), (torch, "svd"),
                        (torch, "svd_lowrank")]:
        monkeypatch.setattr(owner, name, refuse(f"{getattr(owner, '__name__', owner)}.{name}"))
    return attempts


@pytest.mark.parametrize("name", MODELS)
def test_random_registry_builds_run_no_fit_and_no_decomposition(no_fits, name):
    model = zoo.create(name)
    assert no_fits == []
    assert any(r.status in ("tensorized", "rank1") for r in model.tnn_layers)


def test_the_guard_is_not_vacuous_decomp_init_does_reach_the_fit(no_fits):
    """The patched entry point is the one a Layer-Decomp build calls: with weights given, the fit runs (and raises)."""
    dense = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    with pytest.raises(Fitted):
        tensorize(dense, "cp", rate=0.5, skip_first=False, init="decomp")
    assert no_fits and no_fits[0].endswith("fit_network")


def test_a_plugin_backbone_build_does_not_import_timm():
    code = ("import sys, zoo; zoo.create('resnet32-mtt-5pct'); zoo.create('lenet5-mcp-5pct'); "
            "assert 'timm' not in sys.modules, 'timm imported'; import timm; "
            "from timm.layers._fx import _leaf_modules; from zoo_tnn.layers import _Tensorial; "
            "assert _Tensorial in _leaf_modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
