"""Every bundled model re-measured as ``scripts/evaluate.py NAME --check`` does: its recipe's held-out split of the
shared real data, its family's evaluate hook, and the metrics recorded in the registry."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import zoo
from zoo.metrics import classification_metrics
from zoo.recipes import build_data, held_out_metrics, load_recipe, not_reproduced

BUNDLED = sorted(n for n in zoo.list_models(pretrained=True) if zoo.model_info(n).weights.bundled)


def test_the_bundled_models_are_the_ones_the_demos_and_recipes_wrote():
    assert set(BUNDLED) >= {"bqn-mlp-mnist", "bqn-cnn-mnist", "unet-isic-small", "armaunet-isic-small",
                            "convttlstm-mnist-small", "convlstm-mnist-small", "lenet5", "lenet5-mcp-5pct",
                            "lenet5-mcp-10pct", "sc-fac-wrn10-1-cifar10-small", "sc-fac-resflow-mnist-small", "resnet32",
                            "resnet32-cp-10pct", "resnet32-mcp-10pct", "resnet32-tt-10pct", "resnet32-mtt-10pct",
                            "resnet32-tk-10pct", "resnet32-mtr-10pct", "resnet32-mcp-5pct", "resnet32-mtt-5pct",
                            "sc-fac-wrn10-1-cifar10"}


# Its L2-PGD over the 10,000 test images takes about 15 CPU-minutes, more than the whole suite may: here its clean
# accuracy is re-measured on all of them; `scripts/evaluate.py sc-fac-wrn10-1-cifar10 --check` re-measures every metric.
CLEAN_ONLY = {"sc-fac-wrn10-1-cifar10"}


def _clean_accuracy(model, recipe) -> float:
    """Top-1 (%) on the recipe's held-out split, with the task's default metrics (what ``clean_acc`` counts)."""
    with torch.no_grad():
        batches = DataLoader(build_data(recipe, model.pretrained_cfg).test, batch_size=500)
        return classification_metrics(model, batches, zoo.model_info(recipe.model))["top1"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_reproduce_their_recorded_metrics(name, shared_data):
    recipe = load_recipe(name)  # every bundled model has a recipe naming its held-out split
    recorded = zoo.model_info(name).weights.metrics
    model = zoo.create(name, pretrained=True)
    if name in CLEAN_ONLY:
        recorded, measured, description = {"clean_acc": recorded["clean_acc"]}, {
            "clean_acc": _clean_accuracy(model, recipe)}, name
    else:
        measured, description = held_out_metrics(model, recipe)
    assert recorded and not not_reproduced(recorded, measured), (description, recorded, measured)


@pytest.mark.parametrize("name,says", [
    ("bqn-cnn-mnist", "the weights of bqn-cnn-mnist are produced by `python scripts/demo_bqn_mnist.py --publish`"),
    ("resnet50-imagenet", "resnet50-imagenet is the recipe of every model matching 'resnet50-*': name one of them")])
def test_train_py_refuses_demo_recipes_and_pattern_files(name, says, capsys):
    import runpy
    import sys
    from pathlib import Path

    old, sys.argv = sys.argv, ["train.py", name, "--publish"]
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "train.py"), run_name="__main__")
    finally:
        sys.argv = old
    assert stop.value.code == 2 and says in capsys.readouterr().err


def test_a_recipe_cannot_name_both_a_producer_and_a_schedule(tmp_path):
    from zoo.errors import ZooError

    path = tmp_path / "lenet5.yaml"
    path.write_text("model: lenet5\ndata: {source: mnist, holdout: 2000}\nproduced_by: python scripts/x.py\n"
                    "finetune: {epochs: 1}\n")
    with pytest.raises(ZooError, match=r"weights come from .python scripts/x.py. has no finetune or distill schedule"):
        load_recipe(str(path))


def test_not_reproduced_names_missing_and_differing_metrics():
    recorded = {"top1": 97.9, "nll": 0.07, "ece": 0.2}
    assert not_reproduced(recorded, {"top1": 97.95, "nll": 0.0705, "ece": 0.2, "extra": 1.0}) == {}
    assert not_reproduced(recorded, {"top1": 97.7, "nll": 0.07}) == {"top1": (97.9, 97.7), "ece": (0.2, None)}


def test_the_arma_split_must_be_the_demos(shared_data):
    from zoo_arma.isic import recipe_data

    with pytest.raises(ValueError, match=r"holdout must be 19 .* got 20"):
        recipe_data(cfg={}, holdout=20)
