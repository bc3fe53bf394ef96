"""``config.json`` of a Hub-ready folder, read as untrusted input.

A ``local-dir:`` or ``hf-hub:`` folder may come from anyone, and its build arguments are passed to a family's
builder and from there to ``timm.create_model``. So the file is parsed strictly (a JSON object of finite numbers,
UTF-8, at most :data:`MAX_BYTES` and :data:`MAX_DEPTH` levels), validated with pydantic, and every build argument
name must be on an allow-list (:func:`allowed_build_args`) and never one that makes timm or a builder read a file
or URL (:data:`FORBIDDEN_ARGS`). String values that look like paths or URLs are refused too.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from zoo.errors import PluginError, WeightsError, ZooError
from zoo.hub.files import sha256_of
from zoo.registry.schema import ENTRY_FIELDS, InputSpec, ModelEntry, Reference, Task

MAX_BYTES = 1 << 20
"""The largest ``config.json`` read (1 MiB; the zoo writes a few KiB)."""

MAX_DEPTH = 16
"""The deepest nesting of objects and lists accepted (the zoo writes at most 5 levels)."""

MAX_STRING = 256
"""The longest string value accepted in build arguments."""

MAX_TEXT = 1024
"""The longest descriptive string accepted in ``training`` (a data path as the user gave it)."""

FORBIDDEN_ARGS: FrozenSet[str] = frozenset({
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_file", "pretrained_strict",
    "checkpoint_path", "checkpoint", "cache_dir", "model_dir", "file", "url", "hf_hub_id", "hf_hub_filename",
    "state_dict", "weights", "weights_path", "path", "config_path",
})
"""Build arguments a saved config may never set: they make timm or a builder load weights or read a file or URL,
around the zoo's safetensors + sha256 checks."""

_FORBIDDEN_WORDS = frozenset({"pretrained", "checkpoint", "file", "filename", "filepath", "fname", "url", "uri", "dir",
                              "cache", "hub"})

COMMON_BUILD_ARGS: FrozenSet[str] = frozenset({
    "num_classes", "in_chans", "drop_rate", "drop_path_rate", "drop_block_rate", "global_pool", "img_size",
    "output_stride", "features_only", "out_indices",
})
"""Build arguments accepted for every family (timm's usual model options), besides those of
:func:`allowed_build_args`."""

_PATH_LIKE = re.compile(r"[/\\:]|^[~.]")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number (expected a finite number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows to {value} (expected a finite number)")
    return value


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice is refused (``json`` would keep the last silently, and
    two readers could then disagree on what the file says)."""
    data: Dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"key {key!r} appears twice in one object")
        data[key] = value
    return data


def parse_json_object(path: Path) -> Dict[str, Any]:
    """The JSON object in ``path``, or a :class:`ZooError` naming the file and what was expected."""
    expected = "expected a JSON object written by zoo.save_pretrained"
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ZooError(f"{path} is {size} bytes, larger than the {MAX_BYTES} a config is allowed; {expected}")
        raw = path.read_bytes()
    except OSError as exc:
        raise ZooError(f"{path} cannot be read: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ZooError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); {expected}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ZooError(f"{path} is nested too deeply (more than {MAX_DEPTH} levels allowed); {expected}") from None
    except ValueError as exc:  # json.JSONDecodeError, NaN / Infinity, huge integers
        raise ZooError(f"{path} is not valid JSON: {exc}; {expected}") from None
    if not isinstance(data, dict):
        raise ZooError(f"{path} holds a JSON {_json_type(data)}; {expected}")
    if _depth(data) > MAX_DEPTH:
        raise ZooError(f"{path} is nested too deeply (more than {MAX_DEPTH} levels allowed); {expected}")
    return data


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _depth(value: Any) -> int:
    """Levels of objects and lists in ``value`` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def allowed_build_args(family: str, builder: str) -> FrozenSet[str]:
    """Build argument names a saved config may set for ``family``'s ``builder``.

    The allow-list: :data:`COMMON_BUILD_ARGS`, every argument name the registry uses (at any nesting level, e.g.
    ``cell_kwargs.order``), the named parameters of the family's builders, and ``Family.extras["build_args"]``
    (a plugin's own list). :data:`FORBIDDEN_ARGS` are removed whatever their source."""
    from zoo import plugins
    from zoo.registry.resolve import entries

    names = set(COMMON_BUILD_ARGS)
    try:
        registry = entries()
    except ZooError:  # a broken registry fragment must not make saved folders unloadable
        registry = {}
    for entry in registry.values():
        names.update(_keys(entry.args))
    fam = plugins.get_family(family)
    for fn in fam.builders.values():
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature
            continue
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    names.update(fam.extras.get("build_args", ()))
    return frozenset(n for n in names if not _forbidden(n))


def _keys(value: Any) -> List[str]:
    """Every mapping key in ``value``, at any depth."""
    if isinstance(value, Mapping):
        return [str(k) for k in value] + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, (list, tuple)):
        return [k for v in value for k in _keys(v)]
    return []


def _forbidden(name: str) -> bool:
    """A name of :data:`FORBIDDEN_ARGS`, or with a word (between underscores) that names weights, files or URLs;
    ``path`` only as the first or last word (``checkpoint_path``, not timm's ``drop_path_rate``)."""
    words = name.lower().split("_")
    return (name in FORBIDDEN_ARGS or bool(_FORBIDDEN_WORDS.intersection(words))
            or "path" in (words[0], words[-1]))


def check_build_args(args: Mapping[str, Any], allowed: Optional[FrozenSet[str]], where: str) -> None:
    """Raise ``ValueError`` (turned into a ZooError by :func:`load_config`) on the first argument that is
    forbidden, not on the allow-list (when given), or whose value is not plain data or looks like a path/URL."""
    for key, value in args.items():
        name = f"{where}.{key}"
        if not isinstance(key, str) or _forbidden(key):
            raise ValueError(f"{name} is not allowed in a saved config: it would let the config make timm or a "
                             f"builder load weights or read a file or URL (weights are only loaded from the "
                             f"folder's sha256-checked model.safetensors)")
        if allowed is not None and key not in allowed:
            raise ValueError(f"{name} is not a known build argument of this family (expected one of: "
                             f"{', '.join(sorted(allowed))})")
        _check_value(value, allowed, name)


def _check_value(value: Any, allowed: Optional[FrozenSet[str]], name: str) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} is {value}, expected a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING or _PATH_LIKE.search(value):
            raise ValueError(f"{name} is {value[:80]!r}: build arguments may not be paths, URLs or hub names "
                             f"(no '/', '\\', ':', leading '~' or '.'; at most {MAX_STRING} characters)")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, allowed, f"{name}[{i}]")
        return
    if isinstance(value, dict):
        check_build_args(value, allowed, name)
        return
    raise ValueError(f"{name} is a {type(value).__name__}, expected JSON data")


class TimmPretrainedCfg(BaseModel):
    """timm's ``pretrained_cfg`` block of a hub ``config.json``: what the model expects, never where weights are
    (weights come only from the folder's ``model.safetensors``). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Optional[str] = None
    tag: Optional[str] = None
    custom_load: Optional[bool] = None
    input_size: Optional[List[int]] = None
    test_input_size: Optional[List[int]] = None
    min_input_size: Optional[List[int]] = None
    fixed_input_size: Optional[bool] = None
    interpolation: Optional[str] = None
    crop_pct: Optional[float] = None
    test_crop_pct: Optional[float] = None
    crop_mode: Optional[str] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    num_classes: Optional[int] = None
    label_offset: Optional[int] = None
    label_names: Optional[List[str]] = None
    label_descriptions: Optional[Dict[str, str]] = None
    pool_size: Optional[List[int]] = None
    test_pool_size: Optional[List[int]] = None
    first_conv: Optional[str] = None
    classifier: Optional[Union[str, List[str]]] = None
    license: Optional[str] = None
    description: Optional[str] = None
    origin_url: Optional[str] = None
    paper_name: Optional[str] = None
    paper_ids: Optional[Union[str, List[str]]] = None
    notes: Optional[List[str]] = None

    @model_validator(mode="before")
    @classmethod
    def _no_weight_location(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            from zoo.timm_adapters import WEIGHT_LOCATION_KEYS

            found = sorted(k for k in WEIGHT_LOCATION_KEYS if data.get(k) is not None)
            if found:
                raise ValueError(f"{', '.join(found)} may not be set: a saved model's pretrained_cfg never points at "
                                 f"weights (its weights are the folder's sha256-checked model.safetensors)")
        return data


class _TimmHubFields(BaseModel):
    """timm's top-level hub ``config.json`` fields (``timm.create_model('hf-hub:...')`` reads them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Optional[str] = None
    num_classes: Optional[int] = None
    num_features: Optional[int] = None
    global_pool: Optional[str] = None
    pretrained_cfg: Optional[TimmPretrainedCfg] = None
    model_args: Dict[str, Any] = {}
    label_names: Optional[List[str]] = None
    label_descriptions: Optional[Dict[str, str]] = None

    @field_validator("model_args")
    @classmethod
    def _safe_model_args(cls, value: Dict[str, Any], info: ValidationInfo) -> Dict[str, Any]:
        check_build_args(value, (info.context or {}).get("allowed"), info.field_name or "")
        return value


class TimmConfig(_TimmHubFields):
    """A ``config.json`` written by timm (``save_for_hf`` / ``push_to_hub``), read by the zoo: ``architecture``
    names a timm model or a zoo name, ``model_args`` are its build arguments (allow-listed like the zoo's)."""

    architecture: str
    pretrained_cfg: TimmPretrainedCfg = TimmPretrainedCfg()

    @model_validator(mode="before")
    @classmethod
    def _drop_weight_location(cls, data: Any) -> Any:
        """timm's loader replaces these anyway; the zoo never reads them (weights: the folder's safetensors)."""
        if isinstance(data, Mapping) and isinstance(data.get("pretrained_cfg"), Mapping):
            from zoo.timm_adapters import WEIGHT_LOCATION_KEYS

            cfg = {k: v for k, v in data["pretrained_cfg"].items() if k not in WEIGHT_LOCATION_KEYS}
            data = {**data, "pretrained_cfg": cfg}
        return data

    def entry(self, source: Path) -> ModelEntry:
        """The registry entry of ``architecture`` with this folder's classes and input statistics."""
        from zoo.registry.resolve import find_entry

        base = find_entry(self.architecture)
        cfg = self.pretrained_cfg
        spec = base.input.model_dump()
        if cfg.input_size is not None:
            spec["shape"] = list(cfg.input_size)
        for key in ("mean", "std"):
            if getattr(cfg, key) is not None:
                spec[key] = list(getattr(cfg, key))
        classes = self.num_classes if self.num_classes is not None else cfg.num_classes
        if classes is not None:
            spec["num_classes"] = classes
        if isinstance(cfg.first_conv, str):
            spec["first_conv"] = cfg.first_conv
        if isinstance(cfg.classifier, str):
            spec["classifier"] = cfg.classifier
        fields = base.model_dump(exclude={"source", "input", "weights"})
        return ModelEntry(**{**fields, "input": InputSpec(**spec)}, source=str(source))


class TrainingRecord(BaseModel):
    """How a folder written by ``zoo train`` / :func:`zoo.finetune` was trained (``config.json``'s ``training``):
    descriptive only, never used to find or load anything. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str = Field(max_length=MAX_TEXT)           # what was fine-tuned: a zoo name or local-dir:/hf-hub:
    from_weights: bool                                     # started from trained weights (else a random init)
    data: str = Field(max_length=MAX_TEXT)                 # the training data as given (a path, or a Dataset's type)
    data_format: str = Field(max_length=64)                # image-folder, csv, npz, segmentation, video, dataset
    train_samples: int = Field(ge=0)
    val_data: Optional[str] = Field(None, max_length=MAX_TEXT)
    val_samples: Optional[int] = Field(None, ge=0)
    num_classes: Optional[int] = Field(None, ge=1)
    epochs: int = Field(ge=1)                              # epochs the run was set to train
    best_epoch: int = Field(ge=1)                          # the epoch these weights come from
    input_size: List[int]
    metrics: Dict[str, float] = {}                         # the best epoch's validation metrics
    zoo_version: Optional[str] = Field(None, max_length=64)


class FolderEntry(ModelEntry):
    """The registry entry of a saved folder, with what its ``config.json`` adds to a model's ``pretrained_cfg``
    beyond an entry: the class names, timm's eval preprocessing (``crop_pct``, ``interpolation``, ``crop_mode``)
    and the training record. :meth:`zoo.ModelConfig.for_built` makes them the built model's (a field the folder
    does not record leaves the model's own value, timm's ``crop_pct`` say), so
    ``timm.data.resolve_data_config(model=...)`` and the labels of its outputs are those it was trained with."""

    label_names: Optional[List[str]] = None
    crop_pct: Optional[float] = None
    interpolation: Optional[str] = None
    crop_mode: Optional[str] = None
    training: Optional[TrainingRecord] = None


class SavedConfig(_TimmHubFields):
    """The ``config.json`` written by :func:`zoo.save_pretrained` (unknown keys are refused): the zoo's fields
    plus timm's hub fields, so ``timm.create_model('local-dir:...')`` / ``'hf-hub:...'`` load it too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    family: str
    builder: str
    args: Dict[str, Any] = {}
    task: Task = "classification"
    dataset: str
    input: InputSpec
    reference: Optional[Reference] = None
    tags: List[str] = []
    description: Optional[str] = None
    build_kwargs: Dict[str, Any] = {}
    metrics: Dict[str, float] = {}
    data: Optional[str] = None
    zoo_version: Optional[str] = None
    weights_sha256: Optional[str] = None
    training: Optional[TrainingRecord] = None

    @field_validator("args", "build_kwargs")
    @classmethod
    def _safe_build_args(cls, value: Dict[str, Any], info: ValidationInfo) -> Dict[str, Any]:
        allowed = (info.context or {}).get("allowed")
        check_build_args(value, allowed, info.field_name or "")
        return value

    @field_validator("weights_sha256")
    @classmethod
    def _hex(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError(f"expected 64 lowercase hex digits, got {value[:80]!r}")
        return value

    @model_validator(mode="after")
    def _timm_fields_agree(self) -> "SavedConfig":
        from zoo.timm_adapters import FOLDER_ARCHITECTURE

        if self.architecture not in (None, self.name, FOLDER_ARCHITECTURE):
            raise ValueError(f"architecture {self.architecture!r} differs from name {self.name!r} (timm builds "
                             f"'architecture', the zoo builds 'name': they must be the same model, or "
                             f"architecture {FOLDER_ARCHITECTURE!r}, the zoo's entrypoint for saved folders)")
        if self.num_classes is not None and self.num_classes != self.input.num_classes:
            raise ValueError(f"num_classes {self.num_classes} differs from input.num_classes "
                             f"{self.input.num_classes}")
        names = self.label_names if self.label_names is not None else (
            self.pretrained_cfg.label_names if self.pretrained_cfg is not None else None)
        if names is not None and self.input.num_classes is not None and len(names) != self.input.num_classes:
            raise ValueError(f"label_names has {len(names)} names but the model has {self.input.num_classes} "
                             f"classes (input.num_classes)")
        timm_names = self.pretrained_cfg.label_names if self.pretrained_cfg is not None else None
        if self.label_names is not None and timm_names is not None and timm_names != self.label_names:
            raise ValueError("label_names differs from pretrained_cfg.label_names")
        return self

    def entry(self, source: Path) -> FolderEntry:
        """The registry entry this config describes, with its class names, preprocessing and training record."""
        fields = self.model_dump(include={"name", *ENTRY_FIELDS}, exclude_none=True)
        cfg = self.pretrained_cfg or TimmPretrainedCfg()
        names = self.label_names if self.label_names is not None else cfg.label_names
        return FolderEntry(**fields, source=str(source), label_names=names, crop_pct=cfg.crop_pct,
                           interpolation=cfg.interpolation, crop_mode=cfg.crop_mode, training=self.training)


def load_config(path: Path) -> SavedConfig:
    """Parse and validate a ``config.json``; any problem is a :class:`ZooError` naming the file and the field."""
    try:
        return validate_config(parse_json_object(path), path)
    except ValidationError as err:
        raise ZooError(f"{path} is not a valid zoo config:\n{_format(err)}") from None
    except PluginError as exc:  # a family that is not installed or fails to import
        raise PluginError(f"{path}: {exc}") from None


def check_saveable(config: Mapping[str, Any], directory: Path) -> None:
    """Refuse to save a config that :func:`load_config` would refuse to load back (e.g. a build argument that is
    not on the allow-list): better an error now than a folder that cannot be used."""
    try:
        data = json.loads(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ZooError(f"save_pretrained: the config of {directory} is not JSON data ({exc}); build arguments must "
                       f"be numbers, strings, booleans, None, lists and dicts") from None
    try:
        validate_config(data, directory / "config.json")
    except ValidationError as err:
        raise ZooError(f"save_pretrained: {directory} could not be loaded back, its config would be refused:\n"
                       f"{_format(err)}\n(a plugin declares extra build arguments in "
                       f"Family(extras={{'build_args': [...]}}); see docs/security.md)") from None


def is_timm_config(data: Mapping[str, Any]) -> bool:
    """Whether parsed ``config.json`` data was written by timm (timm's ``architecture``, none of the zoo's fields)."""
    return "architecture" in data and "family" not in data and "builder" not in data


def load_timm_config(path: Path) -> TimmConfig:
    """Parse and validate a timm-format ``config.json``; problems are a :class:`ZooError` naming file and field."""
    data = parse_json_object(path)
    try:
        shape = TimmConfig.model_validate(data)
        entry = shape.entry(path)
        allowed = allowed_build_args(entry.family, entry.builder)
        return TimmConfig.model_validate(data, context={"allowed": allowed})
    except ValidationError as err:
        raise ZooError(f"{path} is not a valid timm config:\n{_format(err)}") from None
    except PluginError as exc:
        raise PluginError(f"{path}: {exc}") from None


def validate_config(data: Dict[str, Any], path: Path) -> SavedConfig:
    """The :class:`SavedConfig` of parsed JSON ``data`` (raises pydantic's ``ValidationError``)."""
    shape = SavedConfig.model_validate(data)  # structure first: family and builder must be strings
    allowed = allowed_build_args(shape.family, shape.builder)
    config = SavedConfig.model_validate(data, context={"allowed": allowed})
    config.entry(path)  # the entry's own checks (name, input shape)
    return config


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<config>"
        given = e.get("input")
        shown = "" if isinstance(given, (dict, list)) or e["type"] == "value_error" else f" (given: {given!r:.80})"
        lines.append(f"  {field}: {e['msg'].removeprefix('Value error, ')}{shown}")
    return "\n".join(lines)


def verify_folder_weights(directory: Path, config: SavedConfig, weights: Path) -> Path:
    """``weights`` checked against ``config.weights_sha256``; a folder saved without one loads with a warning."""
    if not weights.is_file():
        raise WeightsError(f"weights file {weights} does not exist (expected the model.safetensors written by "
                           f"zoo.save_pretrained beside {directory / 'config.json'})")
    if config.weights_sha256 is None:
        warnings.warn(f"{directory / 'config.json'} records no weights_sha256 (saved by an older zoo), so "
                      f"{weights.name} is loaded unchecked; save the model again with zoo.save_pretrained to "
                      f"record it", RuntimeWarning, stacklevel=3)
        return weights
    actual = sha256_of(weights)
    if actual != config.weights_sha256:
        raise WeightsError(f"weights file {weights} is corrupted or not the file its config.json describes: sha256 "
                           f"is {actual}, config.json expects {config.weights_sha256}. Copy or download the "
                           f"folder again")
    return weights
