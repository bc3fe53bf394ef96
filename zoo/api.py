"""The public entry points: create, list_models, model_info, list_families."""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from torch import nn

from zoo import plugins
from zoo.errors import PluginError, WeightsError, ZooError
from zoo.registry.resolve import entries, filter_names, find_entry
from zoo.registry.schema import ModelEntry

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"


def create(name: str, pretrained: bool = False, num_classes: Optional[int] = None, in_chans: Optional[int] = None,
           checkpoint_path: Optional[Union[str, os.PathLike]] = None, **kwargs: Any) -> nn.Module:
    """Build a model by registry name, family grammar name, ``local-dir:DIR`` or ``hf-hub:ORG/REPO[@REV]``.

    Args:
        name: the model name (see :func:`list_models`).
        pretrained: load the published weights (sha256-checked safetensors).
        num_classes: new number of classes; the pretrained classifier is then dropped.
        in_chans: number of input channels; the pretrained first convolution is adapted.
        checkpoint_path: a local ``.safetensors`` file to load instead of the published weights.
        **kwargs: forwarded to the family's builder (override registry arguments).
    """
    num_classes = check_count("num_classes", num_classes, minimum=0)
    in_chans = check_count("in_chans", in_chans, minimum=1)
    entry, weights_file, extra_kwargs = _entry_for(name, pretrained)
    kwargs = {**extra_kwargs, **kwargs}
    features = {k: kwargs.pop(k) for k in FEATURE_KWARGS if k in kwargs}
    model = _build(entry, num_classes, in_chans, kwargs)
    source = None
    if checkpoint_path is not None:
        source = _load_weights(model, entry, Path(checkpoint_path), f"checkpoint:{checkpoint_path}", num_classes,
                               in_chans)
    elif pretrained:
        if weights_file is not None:
            path, origin = weights_file, f"{name}"
        else:
            from zoo.hub.locate import locate_timm_weights, locate_weights

            dense = timm_dense_name(entry)
            path, origin = locate_timm_weights(dense) if dense and entry.weights is None else locate_weights(entry)
        source = _load_weights(model, entry, path, origin, num_classes, in_chans)
    if features.get("features_only"):
        from zoo.timm_adapters import features_only

        model = features_only(model, entry.name, features.get("out_indices"))
    elif "out_indices" in features:
        raise ZooError(f"out_indices={features['out_indices']!r} applies with features_only=True (timm's feature "
                       f"extraction); {entry.name!r} was asked for the full model")
    _attach_cfg(model, entry, {**kwargs, **features}, num_classes, in_chans, source)
    return model


def check_count(name: str, value: Any, minimum: int) -> Optional[int]:
    """``value`` as an ``int``, refused unless it is an integer ``>= minimum`` (``None`` stays ``None``)."""
    if value is None:
        return None
    try:
        number = operator.index(value)  # int, numpy integers; not float, str or bool (below)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool):
        raise ZooError(f"{name} must be a whole number >= {minimum}, got {value!r} ({type(value).__name__})")
    if number < minimum:
        raise ZooError(f"{name} must be a whole number >= {minimum}, got {number}")
    return number


FEATURE_KWARGS = ("features_only", "out_indices")
"""timm's feature-extraction options, applied by the core to any model with timm's ``feature_info``."""


DENSE_WEIGHT_NOTES = ("tag", "license", "origin_url", "paper_name", "paper_ids", "notes")
"""timm ``pretrained_cfg`` fields describing the dense backbone's published weights, dropped with their location."""


def timm_dense_name(entry: ModelEntry) -> Optional[str]:
    """The timm architecture of an entry that is a plain timm model (tag ``timm-dense``), else ``None``."""
    if "timm-dense" in entry.tags and isinstance(entry.args.get("backbone"), str):
        return entry.args["backbone"]
    return None


def _entry_for(name: str, pretrained: bool) -> Tuple[ModelEntry, Optional[Path], Dict[str, Any]]:
    """Registry entry, weights file (for folder sources) and saved build kwargs of ``name``."""
    from zoo.hub.pretrained import read_folder

    if name.startswith(LOCAL_DIR):
        directory = Path(name[len(LOCAL_DIR):]).expanduser()
        if not directory.is_dir():
            raise ZooError(f"{name}: {directory} is not a folder (expected one written by zoo.save_pretrained)")
        return read_folder(directory, pretrained)
    if name.startswith(HF_HUB):
        return read_folder(_download_hub_folder(name[len(HF_HUB):], pretrained), pretrained)
    if os.sep in name or "/" in name or name.endswith((".safetensors", ".pth", ".pt", ".bin")):
        raise ZooError(f"{name!r} looks like a path, not a model name: use zoo.create('local-dir:{name}') for a folder "
                       f"written by save_pretrained, 'hf-hub:ORG/REPO' for the Hub, or checkpoint_path= for a file")
    return find_entry(name), None, {}


def _download_hub_folder(spec: str, pretrained: bool) -> Path:
    import huggingface_hub

    from zoo.hub.pretrained import CONFIG_NAME, WEIGHTS_NAME

    repo_id, _, revision = spec.partition("@")
    from zoo.hub.pretrained import check_repo_id

    check_repo_id(repo_id)  # a malformed id is the user's typo, not a network problem
    files = [CONFIG_NAME] + ([WEIGHTS_NAME] if pretrained else [])
    try:
        paths = [huggingface_hub.hf_hub_download(repo_id, f, revision=revision or None) for f in files]
    except Exception as exc:
        raise WeightsError(f"could not fetch {files} of hf-hub:{spec} (offline: set no HF_HUB_OFFLINE, or put the "
                           f"files in the Hugging Face cache): {exc}") from exc
    return Path(paths[0]).parent


def _build(entry: ModelEntry, num_classes: Optional[int], in_chans: Optional[int], kwargs: Dict[str, Any]) -> nn.Module:
    family = plugins.get_family(entry.family)
    try:
        builder = family.builder(entry.builder)
    except KeyError as exc:
        raise PluginError(f"registry entry {entry.name!r} ({entry.source}): {exc.args[0]}") from None
    args = {**entry.args, **kwargs}
    if entry.task == "classification":
        classes = num_classes if num_classes is not None else entry.input.num_classes
        if classes is not None:
            args["num_classes"] = classes
    elif num_classes is not None:
        raise ZooError(f"num_classes applies to classification models; {entry.name!r} is a {entry.task} model")
    if in_chans is not None:
        args["in_chans"] = in_chans
    try:
        model = builder(**args)
    except SystemExit as exc:  # a plugin must not end the caller's process
        raise PluginError(f"builder {entry.builder!r} of family {entry.family!r} called exit({exc.code!r}) while "
                          f"building {entry.name!r}") from None
    except TypeError as exc:
        bad = _unexpected_keyword(exc)
        if bad is None or bad not in args:
            raise
        raise ZooError(f"{entry.name!r} (family {entry.family!r}, builder {entry.builder!r}) does not accept "
                       f"{bad}={args[bad]!r}: {_accepted_args(builder)}") from None
    if not isinstance(model, nn.Module):
        raise PluginError(f"builder {entry.builder!r} of family {entry.family!r} returned "
                          f"{type(model).__name__}, expected an nn.Module")
    return model


def _unexpected_keyword(exc: TypeError) -> Optional[str]:
    """The argument name of a "got an unexpected keyword argument 'x'" TypeError."""
    import re

    match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    return match.group(1) if match else None


def _accepted_args(builder: Any) -> str:
    """What a builder accepts, for an error message."""
    import inspect

    try:
        params = [p.name for p in inspect.signature(builder).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):
        params = []
    timm_opts = "drop_rate, drop_path_rate, global_pool, features_only, out_indices"
    named = f"it takes {', '.join(params)}" if params else "see the family's documentation for what it takes"
    return (f"{named}. timm's options ({timm_opts}) pass through on timm-backed models; this family's own "
            f"classes honour only the ones their builders name")


def _classifier(entry: ModelEntry, model: nn.Module) -> Optional[Union[str, Sequence[str]]]:
    if entry.input.classifier is not None:
        return entry.input.classifier
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg.get("classifier") if isinstance(cfg, dict) else None


def _first_conv(entry: ModelEntry, model: nn.Module) -> Optional[str]:
    if entry.input.first_conv is not None:
        return entry.input.first_conv
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg.get("first_conv") if isinstance(cfg, dict) else None


def _load_weights(model: nn.Module, entry: ModelEntry, path: Path, origin: str, num_classes: Optional[int],
                  in_chans: Optional[int]) -> str:
    from zoo.hub.state import adapt_state_dict, load_into, read_safetensors

    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    state = read_safetensors(path)
    new_head = (entry.task == "classification" and num_classes is not None
                and num_classes != entry.input.num_classes)
    classifier = _classifier(entry, model)
    if new_head and classifier is None:
        raise WeightsError(f"{entry.name!r} declares no classifier (input.classifier), so its head cannot be "
                           f"replaced for num_classes={num_classes}")
    first_conv = _first_conv(entry, model)
    if in_chans is not None and in_chans != entry.input.shape[0] and first_conv is None:
        raise WeightsError(f"{entry.name!r} declares no first convolution (input.first_conv), so its pretrained "
                           f"weights for {entry.input.shape[0]} input channel(s) cannot be adapted to "
                           f"in_chans={in_chans}; use pretrained=False, or in_chans={entry.input.shape[0]}")
    dropped = adapt_state_dict(state, classifier=classifier, drop_classifier=new_head,
                               first_conv=first_conv, in_chans=in_chans)
    load_into(model, state, dropped, origin)
    return origin


def _attach_cfg(model: nn.Module, entry: ModelEntry, kwargs: Dict[str, Any], num_classes: Optional[int],
                in_chans: Optional[int], source: Optional[str]) -> None:
    cfg: Dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    if timm_dense_name(entry) is None:  # the backbone's weights are not this model's
        from zoo.timm_adapters import WEIGHT_LOCATION_KEYS

        for key in (*WEIGHT_LOCATION_KEYS, *DENSE_WEIGHT_NOTES):
            cfg.pop(key, None)
    own = {key: cfg.get(key) for key in ("first_conv", "classifier")}
    cfg.update(entry.pretrained_cfg())
    for key, value in own.items():  # the model's own names where the entry gives none
        if cfg.get(key) is None and value is not None:
            cfg[key] = value
    entry_input = dict(cfg["input"])
    if num_classes is not None:
        if num_classes != entry_input.get("num_classes"):  # a new head: a saved folder's class names and training
            for key in ("label_names", "label_descriptions", "training"):  # record describe the old one
                cfg.pop(key, None)
        entry_input["num_classes"] = cfg["num_classes"] = num_classes
    if in_chans is not None:
        entry_input["shape"] = [in_chans, *entry_input["shape"][1:]]
        cfg["input_size"] = tuple(entry_input["shape"])
        for key in ("mean", "std"):  # per-channel statistics no longer apply
            entry_input[key] = cfg[key] = None
    cfg["input"] = entry_input
    # in_chans is a build argument of the adapted model: save_pretrained records it, so the folder rebuilds it
    cfg["build_kwargs"] = {**kwargs, "in_chans": in_chans} if in_chans is not None else kwargs
    cfg["weights_source"] = source
    if not kwargs.get("features_only") and not classifier_ok(model, entry):
        raise PluginError(f"classification model {entry.name!r} lacks get_classifier()/reset_classifier()")
    set_pretrained_cfg(model, cfg)


def classifier_ok(model: nn.Module, entry: ModelEntry) -> bool:
    """Classification models must keep timm's ``get_classifier`` / ``reset_classifier``."""
    if entry.task != "classification":
        return True
    return callable(getattr(model, "get_classifier", None)) and callable(getattr(model, "reset_classifier", None))


def list_models(filter: Union[str, Sequence[str]] = "*", family: Optional[str] = None, pretrained: bool = False,
                exclude: Union[str, Sequence[str], None] = None) -> List[str]:
    """Registry names matching fnmatch ``filter`` (naturally sorted); grammar-only names are not listed."""
    return filter_names(entries(family=family, pretrained=pretrained), filter, exclude)


def model_info(name: str) -> ModelEntry:
    """The validated registry entry of ``name`` (or the one a family's grammar synthesises, or the one a
    ``local-dir:`` / ``hf-hub:`` folder's ``config.json`` describes)."""
    if name.startswith((LOCAL_DIR, HF_HUB)):
        return _entry_for(name, pretrained=False)[0]
    return find_entry(name)


def list_families() -> List[Dict[str, Any]]:
    """Every installed family with its distribution, version, status and error (imports each once)."""
    from zoo.registry.loader import fragment_error

    out = []
    for rec in plugins.load_all():
        fam = rec.family
        registry_error = fragment_error(rec.name)
        out.append({"name": rec.name, "distribution": rec.distribution, "version": rec.version,
                    "status": rec.status if rec.error or not registry_error else "registry error",
                    "error": rec.error or (f"registry fragment ignored: {registry_error}" if registry_error else None),
                    "builders": sorted(fam.builders) if fam is not None else [],
                    "models": len(entries(family=rec.name)) if rec.error is None else 0})
    return out


def set_pretrained_cfg(model: nn.Module, cfg: Dict[str, Any]) -> None:
    """Make ``cfg`` the model's ``pretrained_cfg`` and ``default_cfg`` (timm's alias): one dict, never a stale copy."""
    for attr in ("pretrained_cfg", "default_cfg"):
        try:
            setattr(model, attr, cfg)
        except AttributeError:  # a read-only property on some third-party models
            object.__setattr__(model, attr, cfg)
