"""Training recipes: a YAML file per model naming its data, split and schedule. Each family ships its models'
recipes in its package (``zoo_tnn/recipes/NAME.yaml``, installed with it); variants of a recipe (the same model
trained another way, for a comparison) sit in subfolders and are named with them (``comparisons/NAME-e2e-kd``).

A recipe is everything ``scripts/train.py NAME`` needs to reproduce published weights from a seed::

    model: sc-fac-wrn10-1-cifar10-small
    data: {source: cifar10, holdout: 2000, seed: 0}      # mnist | cifar10 | isic | folder | npz | python:module:function
    # folder: {source: folder, train: $IMAGENET_DIR/train, val: $IMAGENET_DIR/val}  (any zoo train data layout)
    # npz: {source: npz, train: cifar10_train, holdout: 5000, test: cifar10_test}  (.npz folders held in memory;
    #      relative paths are below the data folder, $ZOO_DATA; holdout splits the selection set off the training set)
    finetune: {epochs: 5, lr: 0.001, batch_size: 128}   # any zoo.training.FinetuneConfig field
    # or, for a compressed model distilled from a trained teacher (chapter 2):
    # distill: {teacher: resnet32, method: seq-kd, epochs: 2, lr: 0.001, batch_size: 128, blocks: "layer?.?"}
    build: {}                                            # extra kwargs for zoo.create

Weights written by another script (a demo training several models in one run) have a recipe too: it names that
script in ``produced_by`` instead of a ``finetune`` schedule, and defines the held-out split the script measured on,
so ``scripts/evaluate.py NAME --check`` re-measures them.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch.utils.data import Dataset

from zoo import datasets
from zoo.errors import ZooError



def recipe_folders() -> List[Path]:
    """The ``recipes/`` folder of every installed family that has one, in family-name order."""
    from zoo import plugins

    return [folder for rec in plugins.records() if (folder := rec.recipes_dir()) is not None]


def recipe_files() -> List[Path]:
    """Every model's own recipe (``recipes/*.yaml`` of each family; variants in subfolders are not listed)."""
    return [path for folder in recipe_folders() for path in sorted(folder.glob("*.yaml"))]


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    holdout: Optional[int] = Field(None, gt=0, description="held-out examples split off a single data set")
    seed: int = 0
    limit: Optional[int] = Field(None, gt=0, description="use only this many training examples")
    train: Optional[str] = Field(None, description="folder source: training data path ($VARS expanded)")
    val: Optional[str] = Field(None, description="folder source: held-out data path ($VARS expanded)")
    test: Optional[str] = Field(None, description="npz source: the test set the published metrics are measured on "
                                                  "(model selection uses the holdout split, never the test set)")
    options: Dict[str, Any] = Field(default_factory=dict,
                                    description="extra arguments of a python: source (string $VARS expanded)")

    @model_validator(mode="after")
    def _complete(self) -> "DataSpec":
        if self.source == "folder" and (self.train is None or self.val is None):
            raise ValueError("a folder source needs both train and val paths")
        if self.source in ("mnist", "cifar10", "isic") and self.holdout is None:
            raise ValueError(f"source {self.source!r} needs holdout (the size of the held-out split)")
        if self.source == "npz" and (self.train is None or (self.holdout is None) == (self.val is None)):
            raise ValueError("an npz source needs train and exactly one of holdout (split off train) or val")
        if self.test is not None and self.source != "npz":
            raise ValueError("test is an npz source option")
        return self


class DistillSpec(BaseModel):
    """Knowledge distillation of a compressed model from a trained teacher (chapter 2, Section 2.5.3)."""

    model_config = ConfigDict(extra="forbid")

    teacher: str = Field(description="registry name of the teacher, loaded with its published weights")
    method: Literal["layer-decomp", "e2e-kd", "seq-kd"]
    epochs: int = Field(ge=0, description="passes over the training data: per block for seq-kd, in all for e2e-kd")
    lr: float = Field(1e-3, gt=0, description="Adam's learning rate (Section 2.7.1)")
    batch_size: int = Field(128, ge=1)
    blocks: Optional[str] = Field(None, description="seq-kd sub-problems: an fnmatch pattern of module names whose "
                                                    "outputs are matched bottom-up (default: every tensorised layer)")
    tune: Literal["tensorial", "all"] = Field("tensorial", description="what is trained: the tensorial factors "
                                              "(Eqs. 2.9-2.10) or every parameter before each matched output "
                                              "(batch-norm scale and shift too, as the official code does)")
    balance: bool = Field(True, description="Layer-Decomp rescales each layer's fitted factors to equal norms "
                                            "(zoo_tnn.fit.balance_norms, the same kernel); false keeps them as ALS "
                                            "leaves them, the start of the students published before it existed")
    seed: int = 0


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    data: DataSpec
    finetune: Dict[str, Any] = Field(default_factory=dict)
    distill: Optional[DistillSpec] = Field(None, description="train by distillation from a teacher instead of "
                                                             "the finetune schedule")
    build: Dict[str, Any] = Field(default_factory=dict)
    max_bundle_mb: float = 8.0
    produced_by: Optional[str] = Field(None, description="the command that writes the published weights when it is "
                                                         "not scripts/train.py (then there is no finetune schedule)")

    @property
    def is_pattern(self) -> bool:
        """Whether ``model`` is an fnmatch pattern (``resnet50-*``): the recipe of every matching model."""
        return any(c in self.model for c in "*?[")

    @model_validator(mode="after")
    def _one_producer(self) -> "Recipe":
        if self.produced_by is not None and (self.finetune or self.distill):
            raise ValueError(f"a recipe whose weights come from {self.produced_by!r} has no finetune or distill "
                             "schedule")
        if self.distill is not None and self.finetune:
            raise ValueError("a recipe has either a finetune schedule or a distill section, not both")
        return self


def load_recipe(name_or_path: str, folders: Optional[Sequence[Path]] = None) -> Recipe:
    """The recipe of a model name (``NAME.yaml`` in a family's recipes, or a variant such as
    ``comparisons/NAME-e2e-kd``; else the recipe whose ``model`` is an fnmatch pattern matching NAME, e.g.
    ``resnet50-*``, with ``model`` set to NAME) or of a YAML file path. ``folders``: where to look instead of the
    installed families' recipe folders."""
    if name_or_path.endswith((".yaml", ".yml")):
        return _parse(Path(name_or_path))
    folders = recipe_folders() if folders is None else list(folders)
    for folder in folders:
        if (folder / f"{name_or_path}.yaml").is_file():
            return _parse(folder / f"{name_or_path}.yaml")
    recipes = [_parse(p) for folder in folders for p in sorted(folder.glob("*.yaml"))]
    for recipe in recipes:
        if recipe.is_pattern and fnmatch.fnmatchcase(name_or_path, recipe.model):
            return recipe.model_copy(update={"model": name_or_path})
    known = ", ".join(r.model for r in recipes) or "none"
    where = ", ".join(map(str, folders)) or "no installed family ships recipes"
    raise ZooError(f"no recipe {name_or_path!r} and no recipe pattern matches it (looked in {where}); recipes "
                   f"exist for: {known}")


def _parse(path: Path) -> Recipe:
    if not path.is_file():
        raise ZooError(f"no recipe {path}")
    try:
        return Recipe(**(yaml.safe_load(path.read_text()) or {}))
    except ValidationError as err:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ZooError(f"invalid recipe {path}: {fields}") from None


class TensorImages(Dataset):
    """uint8 images (N, C, H, W) + labels, scaled to [0, 1], resized to ``size`` and normalised by mean/std."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: Tuple[int, int],
                 mean: Optional[list], std: Optional[list]):
        x = images.float() / 255.0
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        channels = x.shape[1]
        mean_t = torch.tensor(mean or [0.5] * channels).view(1, -1, 1, 1)
        std_t = torch.tensor(std or [0.5] * channels).view(1, -1, 1, 1)
        self.x, self.y = (x - mean_t) / std_t, labels

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class RecipeData(NamedTuple):
    """A recipe's data: ``train``; ``val``, the split that picks the best epoch; ``test``, the split the published
    metrics are measured on (``val`` itself when the recipe has no separate test set); a description for cards."""

    train: Dataset
    val: Dataset
    test: Dataset
    description: str


def build_data(recipe: Recipe, cfg: Mapping[str, Any]) -> RecipeData:
    """The :class:`RecipeData` of ``recipe`` for a model whose ``pretrained_cfg`` is ``cfg``."""
    if recipe.data.source == "npz":
        role = ("to report the accuracy before and after distillation (no selection)" if recipe.distill is not None
                else "to choose the best epoch")
        return _npz_data(recipe.data, cfg, augment=bool(recipe.finetune.get("augment", True)), held_role=role)
    train, held, description = _build_train_held(recipe, cfg)
    return RecipeData(train, held, held, description)


def _npz_data(spec: DataSpec, cfg: Mapping[str, Any], augment: bool, held_role: str) -> RecipeData:
    """Train / selection / test sets of ``.npz`` folders (:mod:`zoo.training.tensor_data`); the selection set is
    ``holdout`` training examples of a seeded split, or the ``val`` folder. ``augment``: crops and flips of the
    training images; ``held_role``: what the selection set is for, in the description."""
    from torch.utils.data import Subset

    from zoo.paths import data_dir
    from zoo.training.tensor_data import npz_folder_data

    def folder(path: str) -> Path:
        resolved = Path(os.path.expandvars(path)).expanduser()
        resolved = resolved if resolved.is_absolute() else data_dir() / resolved
        if not resolved.is_dir():
            raise ZooError(f"recipe data {resolved} does not exist (relative paths are below the data folder "
                           f"$ZOO_DATA, {data_dir()}; the recipe names {path})")
        return resolved

    train_dir = folder(spec.train)
    augmented = npz_folder_data(train_dir, cfg["input"], train=True, augment=augment)
    plain = augmented.without_augmentation()
    if spec.holdout is not None:
        train_idx, held_idx = datasets.split(len(augmented), spec.holdout, spec.seed)
        if spec.limit is not None:
            train_idx = train_idx[:spec.limit]
        train, val = Subset(augmented, train_idx.tolist()), Subset(plain, held_idx.tolist())
        how = f"{augmented.pad}-px padded random crops, horizontal flips" if augment else "no augmentation"
        text = (f"{len(train_idx):,} of the {len(augmented):,} images of {spec.train} for training ({how}); a "
                f"disjoint {len(held_idx):,} of them (seeded split, seed {spec.seed}) {held_role}")
    else:
        train, val = augmented, npz_folder_data(folder(spec.val), cfg["input"], train=False)
        text = f"{spec.train} for training; {spec.val} {held_role}"
    if spec.test is None:
        return RecipeData(train, val, val, text + "; metrics on that selection set")
    test = npz_folder_data(folder(spec.test), cfg["input"], train=False)
    return RecipeData(train, val, test, text + f"; metrics on all {len(test):,} images of {spec.test}, "
                                               "never used for training or selection")


def _build_train_held(recipe: Recipe, cfg: Mapping[str, Any]) -> Tuple[Dataset, Dataset, str]:
    """(train, held-out, description) of the sources whose held-out split serves selection and metrics alike."""
    spec = recipe.data
    if spec.source in ("mnist", "cifar10"):
        images, labels = getattr(datasets, spec.source)()
        train, held = datasets.split(len(labels), spec.holdout, spec.seed)
        if spec.limit is not None:
            train = train[:spec.limit]
        shape = cfg["input"]["shape"]
        make = lambda idx: TensorImages(images[idx], labels[idx], (shape[-2], shape[-1]),  # noqa: E731
                                        cfg["input"].get("mean"), cfg["input"].get("std"))
        what = {"mnist": "MNIST test images (official t10k)", "cifar10": "CIFAR-10 test images"}[spec.source]
        text = (f"{len(train):,} of the {len(labels):,} {what} for training; a disjoint held-out {len(held):,} "
                f"(seeded split, seed {spec.seed}) for the metrics")
        return make(train), make(held), text
    if spec.source == "isic":
        from torch.utils.data import Subset

        from zoo.training.datasets import build_dataset

        full = build_dataset(datasets.isic_dir(), cfg, train=True)
        train, held = datasets.split(len(full), spec.holdout, spec.seed)
        text = (f"{len(train)} of the 93 ISIC 2018 sample images (resized to {cfg['input']['shape'][1:]}) for "
                f"training; a disjoint held-out {len(held)} (seed {spec.seed}) for the metrics")
        return Subset(full, train.tolist()), Subset(full, held.tolist()), text
    if spec.source == "folder":
        from zoo.training.datasets import build_dataset

        paths = [Path(os.path.expandvars(p)).expanduser() for p in (spec.train, spec.val)]
        for path in paths:
            if not path.exists():
                raise ZooError(f"recipe data {path} does not exist (set the environment variables the recipe names: "
                               f"{spec.train}, {spec.val})")
        train = build_dataset(paths[0], cfg, train=True)
        held = build_dataset(paths[1], cfg, train=False, classes=getattr(train, "classes", None))
        return train, held, f"training data {paths[0]}; held-out data {paths[1]}"
    if spec.source.startswith("python:"):
        module, _, func = spec.source[len("python:"):].partition(":")
        try:
            factory = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as exc:
            raise ZooError(f"recipe data source {spec.source!r} cannot be imported: {exc}") from None
        options = {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in spec.options.items()}
        unset = sorted({v for v in options.values() if isinstance(v, str) and "$" in v})
        if unset:
            raise ZooError(f"recipe data options {unset} name environment variables that are not set")
        return factory(cfg=cfg, holdout=spec.holdout, seed=spec.seed, limit=spec.limit, **options)
    raise ZooError(f"unknown recipe data source {spec.source!r} (mnist, cifar10, isic, folder, npz or python:module:function)")


def held_out_metrics(model: torch.nn.Module, recipe: Recipe,
                     batch_size: Optional[int] = None) -> Tuple[Dict[str, float], str]:
    """``model``'s metrics on the held-out split of ``recipe`` (the family's ``evaluate``, else the task's default),
    in batches of ``batch_size`` (default: the recipe's, as ``scripts/train.py`` measures), and the data description."""
    from torch.utils.data import DataLoader

    from zoo.metrics import evaluate
    from zoo.training.trainer import FinetuneConfig, entry_of

    data = build_data(recipe, model.pretrained_cfg)
    size = batch_size or (recipe.distill.batch_size if recipe.distill is not None
                          else FinetuneConfig(**recipe.finetune).batch_size)
    return evaluate(model, DataLoader(data.test, batch_size=size), entry_of(model)), data.description


def not_reproduced(recorded: Mapping[str, float], measured: Mapping[str, float],
                   tolerance: float = 1e-3) -> Dict[str, Tuple[float, Optional[float]]]:
    """{metric: (recorded, measured)} of the recorded metrics that are missing from ``measured`` or differ by more
    than ``tolerance`` relative to ``max(1, |recorded|)``."""
    return {k: (v, measured.get(k)) for k, v in recorded.items()
            if k not in measured or abs(measured[k] - v) > tolerance * max(1.0, abs(v))}
