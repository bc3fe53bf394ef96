"""The public entry points: create, list_models, model_info, list_families."""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from torch import nn

from zoo import plugins
from zoo.errors import BuildError, PluginError, ZooError
from zoo.hub.sources import HF_HUB, LOCAL_DIR
from zoo.model_config import ModelConfig
from zoo.registry.resolve import entries, filter_names, find_entry
from zoo.registry.schema import ModelEntry


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

    The model's :class:`~zoo.model_config.ModelConfig` is attached as ``model.pretrained_cfg`` (timm's dict).
    """
    from zoo.hub.sources import resolve_source
    from zoo.hub.state import load_weights

    check_name(name)
    pretrained = check_flag("pretrained", pretrained)  # a string such as 'no' would be truthy
    if checkpoint_path is not None and not isinstance(checkpoint_path, (str, os.PathLike)):
        raise ZooError(f"checkpoint_path must be the path of a .safetensors file (str or os.PathLike), got "
                       f"{checkpoint_path!r} ({type(checkpoint_path).__name__})")
    num_classes = check_count("num_classes", num_classes, minimum=0)
    in_chans = check_count("in_chans", in_chans, minimum=1)
    source = resolve_source(name, pretrained and checkpoint_path is None)
    entry = source.entry
    kwargs = {**source.build_kwargs, **kwargs}
    features = {k: kwargs.pop(k) for k in FEATURE_KWARGS if k in kwargs}
    model = _build(entry, num_classes, in_chans, kwargs)
    weights, origin = source.weights, source.origin
    if checkpoint_path is not None:
        weights, origin = Path(checkpoint_path), f"checkpoint:{checkpoint_path}"
    if weights is not None:
        origin = load_weights(model, entry, weights, origin, num_classes, in_chans)
    if features.get("features_only"):
        from zoo.timm_adapters import features_only

        model = features_only(model, entry.name, features.get("out_indices"))
    elif "out_indices" in features:
        raise ZooError(f"out_indices={features['out_indices']!r} applies with features_only=True (timm's feature "
                       f"extraction); {entry.name!r} was asked for the full model")
    elif not classifier_ok(model, entry):
        raise PluginError(f"classification model {entry.name!r} lacks get_classifier()/reset_classifier()")
    config = ModelConfig.for_built(model, entry, {**kwargs, **features}, origin)
    if num_classes is not None:
        config = config.with_num_classes(num_classes)
    if in_chans is not None:
        config = config.with_in_chans(in_chans)
    config.attach(model)
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


def check_name(name: Any) -> str:
    """``name`` itself, refused with a :class:`ZooError` unless it is a ``str``."""
    if not isinstance(name, str):
        raise ZooError(f"a model name must be a str (a registry name, local-dir:DIR or hf-hub:ORG/REPO), got "
                       f"{name!r} ({type(name).__name__})")
    return name


def check_flag(name: str, value: Any) -> bool:
    """``value`` as a ``bool``: Python and NumPy booleans only (a string such as ``'no'`` would be truthy)."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ZooError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


FEATURE_KWARGS = ("features_only", "out_indices")
"""timm's feature-extraction options, applied by the core to any model with timm's ``feature_info``."""


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
    except ZooError:
        raise
    except ValueError as exc:  # the builder's own check of an argument: the same type, named with the model
        raise BuildError(f"{entry.name!r} (family {entry.family!r}, builder {entry.builder!r}) cannot be built "
                         f"with these arguments: {exc}") from exc
    except TypeError as exc:
        fixed = _fixed_keyword(exc)
        if fixed is not None and fixed in kwargs:
            raise ZooError(f"{entry.name!r} (family {entry.family!r}, builder {entry.builder!r}) fixes {fixed} "
                           f"itself, so {fixed}={kwargs[fixed]!r} cannot be given; choose the model whose name "
                           f"has the {fixed} you want (zoo.list_models())") from None
        bad = _unexpected_keyword(exc)
        if bad is None or bad not in args:
            raise _builder_failed(entry, exc) from exc
        raise ZooError(f"{entry.name!r} (family {entry.family!r}, builder {entry.builder!r}) does not accept "
                       f"{bad}={args[bad]!r}: {_accepted_args(builder)}") from None
    except Exception as exc:
        if not _out_of_memory(exc):
            raise _builder_failed(entry, exc) from exc
        sizes = ", ".join(f"{k}={v!r}" for k, v in args.items() if isinstance(v, int) and not isinstance(v, bool))
        raise ZooError(f"building {entry.name!r} ran out of memory ({sizes}): a size is larger than this machine "
                       f"can hold ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(model, nn.Module):
        raise PluginError(f"builder {entry.builder!r} of family {entry.family!r} returned "
                          f"{type(model).__name__}, expected an nn.Module")
    return model


def _builder_failed(entry: ModelEntry, exc: Exception) -> PluginError:
    """The error for a builder that failed other than by refusing an argument (a bug in the family): names the
    model, family and builder; the original exception is chained (the CLI shows it with ``--debug``)."""
    first_line = (str(exc).splitlines() or [""])[0][:300]
    return PluginError(f"builder {entry.builder!r} of family {entry.family!r} failed while building "
                       f"{entry.name!r}: {type(exc).__name__}: {first_line} (a bug in the family's plugin; report it "
                       f"to its authors)")


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (Python's ``MemoryError`` or torch's allocator's)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text


def _fixed_keyword(exc: TypeError) -> Optional[str]:
    """The argument name of a "got multiple values for argument 'x'" TypeError (a builder that sets ``x``)."""
    import re

    match = re.search(r"got multiple values for (?:keyword )?argument '(\w+)'", str(exc))
    return match.group(1) if match else None


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


def classifier_ok(model: nn.Module, entry: ModelEntry) -> bool:
    """Classification models must keep timm's ``get_classifier`` / ``reset_classifier``."""
    if entry.task != "classification":
        return True
    return callable(getattr(model, "get_classifier", None)) and callable(getattr(model, "reset_classifier", None))


def list_models(filter: Union[str, Sequence[str]] = "*", family: Optional[str] = None, pretrained: bool = False,
                exclude: Union[str, Sequence[str], None] = None) -> List[str]:
    """Registry names matching fnmatch ``filter`` (naturally sorted); grammar-only names are not listed."""
    for what, value in (("filter", filter), ("exclude", exclude)):
        patterns = [] if value is None else [value] if isinstance(value, str) else value
        if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
            raise ZooError(f"{what} must be an fnmatch pattern (str) or a list of them, got {value!r}")
    return filter_names(entries(family=family, pretrained=pretrained), filter, exclude)


def model_info(name: str) -> ModelEntry:
    """The validated registry entry of ``name`` (or the one a family's grammar synthesises, or the one a
    ``local-dir:`` / ``hf-hub:`` folder's ``config.json`` describes)."""
    check_name(name)
    if name.startswith((LOCAL_DIR, HF_HUB)):
        from zoo.hub.sources import resolve_source

        return resolve_source(name, pretrained=False).entry
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
