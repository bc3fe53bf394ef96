"""The zoo installed from wheels, outside the source checkout: the core and the five family plugins are built as
wheels, installed into a fresh virtual environment, and used from a folder that is not the checkout. Registry
fragments, bundled weights and recipes must come with the packages; nothing may reach into scripts/ or shared/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
OURS = ("zoo", "zoo_", "spectral_zoo", "__editable__")


def run(*cmd: str, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, zoo executable, env, work folder) of a fresh venv holding the wheels of the core and the plugins;
    third-party packages come from this environment through a folder that links all of them but ours."""
    tmp = tmp_path_factory.mktemp("wheels")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    sources = [tmp / "src" / "core"]
    sources[0].mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, sources[0] / name)
    shutil.copytree(ROOT / "zoo", sources[0] / "zoo", ignore=ignore)
    for plugin in sorted((ROOT / "plugins").glob("zoo-*")):
        sources.append(tmp / "src" / plugin.name)
        shutil.copytree(plugin, sources[-1], ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ZOO_DATA", "VIRTUAL_ENV")}
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
        *map(str, sources), cwd=tmp, env=env)
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=tmp, env=env)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
        *map(str, sorted((tmp / "dist").glob("*.whl"))), cwd=tmp, env=env)
    deps = tmp / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(OURS):
            (deps / entry.name).symlink_to(entry)
    site = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp,
                    env=env).stdout.strip())
    (site / "third_party.pth").write_text(f"{deps}\n")
    work = tmp / "work"
    work.mkdir()
    env.update(ZOO_CACHE=str(tmp / "cache"), HF_HOME=str(tmp / "hf"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return python, venv / "bin" / "zoo", env, work


def test_the_packages_come_from_the_wheels_with_their_data(installed):
    python, _, env, work = installed
    probe = run(str(python), "-c", """
import json, zoo, zoo_tnn
from zoo import plugins
from zoo.recipes import load_recipe, recipe_files
print(json.dumps({"files": [zoo.__file__, zoo_tnn.__file__],
                  "families": plugins.family_names(),
                  "registries": [str(r.registry_path()) for r in plugins.records()],
                  "recipes": len(recipe_files()),
                  "variant": load_recipe("comparisons/resnet32-cp-10pct-e2e-kd").model}))
""", cwd=work, env=env)
    found = json.loads(probe.stdout)
    for path in found["files"] + found["registries"]:
        assert str(ROOT) not in path and "site-packages" in path, path
    assert found["families"] == ["arma", "bqn", "convttlstm", "sc-fac", "tnn"]
    assert found["recipes"] >= 25 and found["variant"] == "resnet32-cp-10pct"


def test_list_and_create_pretrained_from_the_wheels(installed):
    _, zoo_cli, env, work = installed
    listed = run(str(zoo_cli), "list", cwd=work, env=env).stdout.split()
    assert {"resnet50-mtt-1pct", "sc-fac-wrn10-1-cifar10-small", "bqn-mlp-mnist", "armaunet-isic-small",
            "convttlstm-mnist-small"} <= set(listed)
    created = run(str(zoo_cli), "create", "lenet5-mcp-5pct", "--pretrained", "--summary", "--no-flops", cwd=work,
                  env=env)
    assert "lenet5-mcp-5pct" in created.stdout


def test_zoo_train_with_a_recipe_on_a_tiny_folder(installed):
    """``zoo train NAME --recipe``: the schedule of the recipe shipped in the family's wheel, flags on top."""
    _, zoo_cli, env, work = installed
    rng = np.random.default_rng(0)
    data = work / "tiny"
    data.mkdir()
    np.savez(data / "part0.npz", images=rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8),
             labels=rng.integers(0, 10, size=16))
    out = work / "run"
    done = run(str(zoo_cli), "train", "sc-fac-wrn10-1-cifar10-small", "--recipe", "--data", str(data), "--val-data",
               str(data), "--output", str(out), "--epochs", "1", "--batch-size", "8", "--json", cwd=work, env=env)
    report = json.loads(done.stdout)
    assert len(report["history"]) == 1 and (out / "best" / "model.safetensors").is_file()
    config = torch.load(out / "checkpoint.pt", weights_only=True)["config"]
    # the recipe's optimiser and learning rate, the command line's epochs and batch size
    assert (config["optimizer"], config["lr"], config["epochs"], config["batch_size"]) == ("adam", 0.01, 1, 8)
