"""What zoo models and their configs look like to timm: timm's ``PretrainedCfg`` fields, its hub ``config.json``
fields, and its feature-extractor wrappers. Imports only the zoo's errors (and timm, when a wrapper is built)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

TIMM_CFG_KEYS = ("architecture", "tag", "custom_load", "input_size", "test_input_size", "min_input_size",
                 "fixed_input_size", "interpolation", "crop_pct", "test_crop_pct", "crop_mode", "mean", "std",
                 "num_classes", "label_offset", "label_names", "label_descriptions", "pool_size", "test_pool_size",
                 "first_conv", "classifier", "license", "description", "origin_url", "paper_name", "paper_ids",
                 "notes")
"""Fields of timm's ``PretrainedCfg`` that describe a model, not where its weights are."""

WEIGHT_LOCATION_KEYS = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "hf_hub_revision", "source")
"""Fields of timm's ``PretrainedCfg`` that point at weights; a zoo model's ``pretrained_cfg`` never carries the
dense backbone's values of these (its weights are the zoo's, not timm's)."""

FOLDER_ARCHITECTURE = "spectral_zoo_folder"
"""The timm ``architecture`` of a saved folder whose model name timm's registry cannot hold: a name a family's
grammar makes on demand (``resnet50-mtt-3pct``). The zoo registers this entrypoint in timm with its registry names,
and it builds the folder timm read the config from with ``zoo.create``."""


def folder_source(pretrained_cfg: Any) -> Optional[str]:
    """``local-dir:DIR`` / ``hf-hub:ID`` of the folder timm read a config from, else ``None``."""
    if not isinstance(pretrained_cfg, Mapping):
        return None
    if pretrained_cfg.get("source") == "local-dir" and pretrained_cfg.get("file"):
        return f"local-dir:{pretrained_cfg['file']}"
    if pretrained_cfg.get("source") == "hf-hub" and pretrained_cfg.get("hf_hub_id"):
        return f"hf-hub:{pretrained_cfg['hf_hub_id']}"
    return None


def timm_pretrained_cfg(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """timm's view of a zoo ``pretrained_cfg``: its :data:`TIMM_CFG_KEYS`, nulls dropped (as timm saves them),
    tuples as lists, never a weight location."""
    keep_null = {"pool_size", "first_conv", "classifier"}
    out: Dict[str, Any] = {}
    for key in TIMM_CFG_KEYS:
        value = cfg.get(key)
        if value is None and key not in keep_null:
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def hub_fields(model: Any, cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """timm's top-level ``config.json`` fields of ``model``: ``architecture``, ``num_classes``,
    ``num_features``, ``global_pool`` (when a string) and ``pretrained_cfg``."""
    pool = getattr(model, "global_pool", None)
    pool = getattr(pool, "pool_type", pool)
    num_features = getattr(model, "num_features", None)
    num_classes = cfg.get("num_classes")  # the entry's (kept in step with the head by zoo.create and finetune)
    pretrained_cfg = timm_pretrained_cfg(cfg)
    fields = {"architecture": pretrained_cfg.pop("architecture", None), "num_classes": num_classes,
              "num_features": num_features if isinstance(num_features, int) else None,
              "pretrained_cfg": pretrained_cfg}
    if isinstance(pool, str) and pool:
        fields["global_pool"] = pool
    return fields


def features_only(model: Any, name: str, out_indices: Optional[Sequence[int]] = None) -> Any:
    """``model`` as timm's feature extractor (``features_only=True``): for timm's classes a ``FeatureListNet``
    over ``feature_info`` (timm's default), for others (and as fallback) a ``FeatureGetterNet`` over their
    ``forward_intermediates``; a clear error when the model has no ``feature_info``."""
    from zoo.errors import ZooError

    info = getattr(model, "feature_info", None)
    indices = tuple(out_indices) if out_indices is not None else None
    if info is None:
        raise ZooError(f"{name!r} cannot be built with features_only=True: {type(model).__name__} declares no "
                       f"feature_info (timm's list of feature maps), so its stages are unknown. Use "
                       f"torchvision.models.feature_extraction.create_feature_extractor on it instead")
    if indices is not None:
        _check_out_indices(name, indices, len(info))
    from timm.models._features import FeatureGetterNet, FeatureListNet

    getter = callable(getattr(model, "forward_intermediates", None))
    if getter and not type(model).__module__.startswith("timm."):  # the model's own forward computes each map
        return FeatureGetterNet(model, out_indices=indices if indices is not None else tuple(range(len(info))))
    try:  # timm's default feature class: the feature modules are the model's children, run in order
        return FeatureListNet(model, **({"out_indices": indices} if indices is not None else {}))
    except (AssertionError, KeyError, ValueError) as exc:
        if not getter:
            raise ZooError(f"{name!r} cannot be built with features_only=True: {exc}") from None
    return FeatureGetterNet(model, out_indices=indices if indices is not None else tuple(range(len(info))))


def _check_out_indices(name: str, indices: Sequence[Any], count: int) -> None:
    """Refuse ``out_indices`` that are not integers in ``[-count, count)`` (``count`` feature maps)."""
    from zoo.errors import ZooError

    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not -count <= i < count]
    if bad or not indices:
        raise ZooError(f"out_indices={list(indices)!r} of {name!r}: expected feature-map indices in "
                       f"[{-count}, {count - 1}] ({count} maps in feature_info), got {bad or 'none'}")
