"""What a built zoo model is, as one frozen object: :class:`ModelConfig`.

``zoo.create`` makes one per model and attaches ``config.to_dict()`` as ``model.pretrained_cfg`` (and its timm alias
``default_cfg``): timm reads that dict, so it stays a dict. Everything in the zoo that needs to know what a model
is (``finetune``, ``save_pretrained``, ``zoo create --summary``) reads it back with :meth:`ModelConfig.of` and
writes a changed one with :meth:`ModelConfig.attach`: the dict is parsed in this module only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple

from torch import nn

from zoo.errors import ZooError
from zoo.registry.loader import parse_entry
from zoo.registry.schema import ENTRY_FIELDS, InputSpec, ModelEntry

ENTRY_KEYS = ("name", *ENTRY_FIELDS, "weights")
"""``pretrained_cfg`` keys holding the registry entry's own fields."""

DERIVED_KEYS = ("architecture", "input_size", "mean", "std", "num_classes")
"""timm's ``pretrained_cfg`` keys written from the entry (``architecture`` is its name, the rest its ``input``)."""

FALLBACK_KEYS = ("classifier", "first_conv")
"""timm's keys written from the entry's ``input`` where it names a module, else from the model's own."""

OWN_KEYS = ("build_kwargs", "weights_source", "label_names", "training")
"""``pretrained_cfg`` keys of the config's own fields besides the entry."""

DENSE_WEIGHT_NOTES = ("tag", "license", "origin_url", "paper_name", "paper_ids", "notes")
"""timm ``pretrained_cfg`` fields describing the dense backbone's published weights, dropped with their location."""

HEAD_KEYS = ("label_names", "label_descriptions")
"""timm fields that describe one classifier head's outputs: dropped when the head is replaced."""

_NOT_A_ZOO_MODEL = "needs a model made by zoo.create (it reads model.pretrained_cfg)"


def _frozen(mapping: Optional[Mapping[str, Any]]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A built model's registry entry, build arguments, weights source and preprocessing (like timm's
    ``PretrainedCfg``; frozen: change one with :func:`dataclasses.replace` or the ``with_*`` methods).

    Attributes:
        entry: the registry entry as built: ``entry.input`` holds the model's class count, input shape (C, H, W)
            or (T, C, H, W) and normalisation after ``num_classes`` / ``in_chans`` / fine-tuning.
        build_kwargs: keyword arguments given to the builder on top of ``entry.args`` (``in_chans`` included
            when the input was adapted), so a saved folder rebuilds the same model.
        weights_source: where the loaded weights came from (``bundled:PATH``, ``hf-hub:ID@REV``, ``checkpoint:PATH``,
            a folder), ``None`` for a random initialisation.
        label_names: the name of each output class, in output order, when known.
        training: the record of a ``zoo train`` / :func:`zoo.finetune` run that produced the weights.
        timm: timm's ``pretrained_cfg`` fields the entry does not give (``crop_pct``, ``interpolation``,
            ``test_input_size``, ...; the backbone's ``first_conv`` / ``classifier`` where the entry names none),
            never where the dense backbone's weights are.
    """

    entry: ModelEntry
    build_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    weights_source: Optional[str] = None
    label_names: Optional[Tuple[str, ...]] = None
    training: Optional[Mapping[str, Any]] = None
    timm: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "build_kwargs", _frozen(self.build_kwargs))
        object.__setattr__(self, "timm", _frozen({k: v for k, v in self.timm.items()
                                                  if k not in ENTRY_KEYS + DERIVED_KEYS + OWN_KEYS}))
        if self.training is not None:
            object.__setattr__(self, "training", _frozen(self.training))
        if self.label_names is not None:
            names = tuple(str(n) for n in self.label_names)
            classes = self.entry.input.num_classes
            if classes is not None and len(names) != classes:
                raise ZooError(f"{self.entry.name!r}: {len(names)} label_names for a head of {classes} classes")
            object.__setattr__(self, "label_names", names)

    # -- the dict timm sees --------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The ``pretrained_cfg`` dict: timm's fields, the entry's fields and the config's own (a new dict)."""
        cfg = dict(self.timm)
        cfg.update(self.entry.model_dump(exclude={"source"}))
        spec = self.entry.input
        cfg.update(architecture=self.entry.name, input_size=tuple(spec.shape), mean=spec.mean, std=spec.std,
                   num_classes=spec.num_classes)
        for key in FALLBACK_KEYS:
            cfg[key] = getattr(spec, key) if getattr(spec, key) is not None else self.timm.get(key)
        if self.label_names is not None:
            cfg["label_names"] = list(self.label_names)
        if self.training is not None:
            cfg["training"] = dict(self.training)
        cfg["build_kwargs"] = dict(self.build_kwargs)
        cfg["weights_source"] = self.weights_source
        return cfg

    @classmethod
    def from_dict(cls, cfg: Any, *, what: str = "this") -> "ModelConfig":
        """The config a ``pretrained_cfg`` dict made by :meth:`to_dict` describes (``to_dict`` of the result equals
        ``cfg``). The entry's fields are validated again; a dict that is not a zoo model's, or whose class count
        was edited in one place only, is a :class:`~zoo.errors.ZooError` (``what`` names the caller)."""
        if not isinstance(cfg, Mapping) or not all(isinstance(cfg.get(k), str) for k in ("architecture", "family",
                                                                                           "builder")):
            raise ZooError(f"{what} {_NOT_A_ZOO_MODEL}")
        fields = {key: cfg[key] for key in (*ENTRY_FIELDS, "weights") if cfg.get(key) is not None}
        entry = parse_entry(cfg["architecture"], fields, Path("<model.pretrained_cfg>"))
        if cfg.get("num_classes") != entry.input.num_classes:
            raise ZooError(f"model.pretrained_cfg of {entry.name!r} is inconsistent: num_classes is "
                           f"{cfg.get('num_classes')!r} but input.num_classes is {entry.input.num_classes!r}; change "
                           f"the head with model.reset_classifier and zoo.ModelConfig.with_num_classes")
        timm = {k: v for k, v in cfg.items() if k not in ENTRY_KEYS + DERIVED_KEYS + FALLBACK_KEYS + OWN_KEYS}
        for key in FALLBACK_KEYS:  # the model's own, kept where the entry names none
            if getattr(entry.input, key) is None and cfg.get(key) is not None:
                timm[key] = cfg[key]
        names = cfg.get("label_names")
        if names is not None and len(names) != entry.input.num_classes:  # names of another head (one replaced by
            names = None                                                  # hand): not this model's outputs
        return cls(entry=entry, build_kwargs=cfg.get("build_kwargs") or {}, weights_source=cfg.get("weights_source"),
                   label_names=tuple(names) if names is not None else None, training=cfg.get("training"), timm=timm)

    # -- a model's config ------------------------------------------------------------------------------------------
    @classmethod
    def of(cls, model: nn.Module, *, what: str = "this") -> "ModelConfig":
        """The config of a model made by ``zoo.create`` (read from ``model.pretrained_cfg``)."""
        return cls.from_dict(getattr(model, "pretrained_cfg", None), what=what)

    def attach(self, model: nn.Module) -> None:
        """Make ``to_dict()`` the model's ``pretrained_cfg`` and ``default_cfg`` (timm's alias): one dict, never a
        stale copy."""
        cfg = self.to_dict()
        for attr in ("pretrained_cfg", "default_cfg"):
            try:
                setattr(model, attr, cfg)
            except AttributeError:  # a read-only property on some third-party models
                object.__setattr__(model, attr, cfg)

    @classmethod
    def for_built(cls, model: nn.Module, entry: ModelEntry, build_kwargs: Mapping[str, Any],
                  weights_source: Optional[str]) -> "ModelConfig":
        """The config of ``model`` just built from ``entry`` (with ``build_kwargs`` on top of its args).

        timm's fields of the model's own ``pretrained_cfg`` (a timm backbone's preprocessing) are kept where the
        entry gives none; where they describe the dense backbone's published weights (their location, licence,
        paper) they are dropped, unless the entry is that plain timm model. Fields an entry subclass adds (a saved
        folder's class names, preprocessing and training record) become the config's."""
        own = getattr(model, "pretrained_cfg", None)
        timm = dict(own) if isinstance(own, Mapping) else {}
        if entry.timm_dense_name() is None:  # the backbone's weights are not this model's
            from zoo.timm_adapters import WEIGHT_LOCATION_KEYS

            for key in (*WEIGHT_LOCATION_KEYS, *DENSE_WEIGHT_NOTES):
                timm.pop(key, None)
        saved = entry.model_dump(exclude=set(ModelEntry.model_fields))
        timm.update({k: v for k, v in saved.items() if k not in OWN_KEYS and v is not None})
        plain = ModelEntry(**entry.model_dump(include=set(ModelEntry.model_fields)))
        names = saved.get("label_names")
        return cls(entry=plain, build_kwargs=build_kwargs, weights_source=weights_source,
                   label_names=tuple(names) if names is not None else None, training=saved.get("training"),
                   timm=timm)

    # -- changes -----------------------------------------------------------------------------------------------
    def entry_with(self, **fields: Any) -> ModelEntry:
        """The entry with fields replaced, validated again (a bad field is a ``RegistryError``)."""
        data = {**self.entry.model_dump(exclude={"name", "source"}), **fields}
        return parse_entry(self.entry.name, data, Path(self.entry.source or "."))

    def input_with(self, **fields: Any) -> InputSpec:
        """``entry.input`` with fields replaced (``shape``, ``mean``, ``std``, ``num_classes``, ...), validated."""
        return InputSpec(**{**self.entry.input.model_dump(), **fields})

    def with_num_classes(self, num_classes: int) -> "ModelConfig":
        """The config of the model with a new ``num_classes``-way head: the old head's class names and training
        record no longer describe it and are dropped."""
        if num_classes == self.entry.input.num_classes:
            return self
        return dataclasses.replace(self, entry=self.entry_with(input=self.input_with(num_classes=num_classes)),
                                   label_names=None, training=None,
                                   timm={k: v for k, v in self.timm.items() if k not in HEAD_KEYS})

    def with_in_chans(self, in_chans: int) -> "ModelConfig":
        """The config of the model adapted to ``in_chans`` input channels: per-channel statistics no longer apply,
        and ``in_chans`` becomes a build argument (so a saved folder rebuilds the adapted model)."""
        spec = self.entry.input
        if in_chans != spec.channels:
            spec = self.input_with(shape=spec.shape_with_channels(in_chans), mean=None, std=None)
        return dataclasses.replace(self, entry=self.entry_with(input=spec),
                                   build_kwargs={**self.build_kwargs, "in_chans": in_chans})
