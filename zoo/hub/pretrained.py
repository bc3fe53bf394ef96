"""Hub-ready folders: ``model.safetensors`` + ``config.json`` + ``README.md`` model card."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from torch import nn

from zoo.errors import ZooError
from zoo.hub.files import atomic_path, sha256_of, write_text_atomic
from zoo.hub.state import write_safetensors
from zoo.registry.schema import ENTRY_FIELDS, ModelEntry

if TYPE_CHECKING:  # pragma: no cover
    from zoo.hub.config import SavedConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


def config_of(model: nn.Module) -> Dict[str, Any]:
    """Everything needed to rebuild ``model``: its registry entry, the build kwargs, and measured metrics."""
    from zoo.model_config import ModelConfig
    from zoo.timm_adapters import FOLDER_ARCHITECTURE, hub_fields
    from zoo.version import __version__

    model_config = ModelConfig.of(model, what="save_pretrained")
    entry = model_config.entry
    config: Dict[str, Any] = entry.model_dump(include=set(ENTRY_FIELDS))
    config["name"] = entry.name
    config["build_kwargs"] = dict(model_config.build_kwargs)
    config["metrics"] = dict(entry.weights.metrics) if entry.weights is not None else {}
    config["data"] = entry.weights.data if entry.weights is not None else None
    config["zoo_version"] = __version__
    config.update(hub_fields(model, model_config.to_dict()))  # timm's fields: timm.create_model("local-dir:...")
    if not _timm_registers(entry):  # timm builds the folder through the zoo's generic entrypoint
        config["architecture"] = config["pretrained_cfg"]["architecture"] = FOLDER_ARCHITECTURE
    if config["build_kwargs"]:
        config["model_args"] = dict(config["build_kwargs"])
    if model_config.label_names is not None:  # timm writes them at the top too
        config["label_names"] = list(model_config.label_names)
    if model_config.training is not None:  # written by zoo.finetune: how this model was trained
        config["training"] = dict(model_config.training)
    return config


def _timm_registers(entry: ModelEntry) -> bool:
    """Whether timm's registry holds ``entry``'s name once the zoo is imported: a registry name (registered by the
    zoo's import hook) or a plain timm model; not a name a family's grammar makes on demand."""
    from zoo.registry.resolve import entries

    return entry.timm_dense_name() is not None or entry.name in entries()


def save_pretrained(model: nn.Module, directory: str | Path, *, metrics: Optional[Mapping[str, float]] = None,
                    data: Optional[str] = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a ``README.md`` model card into ``directory``.

    Each file is written to a temporary name and renamed, so an interrupted save leaves no partial file.
    ``metrics`` (measured by a script) and ``data`` (what the model was trained on) go into config and card.
    """
    directory = _folder_to_write(directory)
    config = config_of(model)
    if metrics is not None:
        config["metrics"] = _numbers(metrics)
    config["metrics"] = _finite_metrics(config["metrics"])
    if data is not None:
        config["data"] = data
    from zoo.hub.config import check_saveable

    check_saveable(config, directory)
    state = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    try:
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            write_safetensors(state, tmp, {"format": "pt", "zoo_name": config["name"]})
            config["weights_sha256"] = sha256_of(tmp)  # checked when the folder is loaded
        write_text_atomic(directory / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=False) + "\n")
        write_text_atomic(directory / CARD_NAME, model_card(config))
    except OSError as exc:  # no space, no permission, a read-only or virtual file system
        raise ZooError(f"save_pretrained cannot write into {directory}: {exc.strerror or exc}") from exc
    return directory


def _folder_to_write(directory: Any) -> Path:
    """``directory`` as a ``Path``, refused unless it is a path that is, or can become, a folder."""
    if not isinstance(directory, (str, os.PathLike)):
        raise ZooError(f"save_pretrained needs a directory (str or path), got {directory!r} "
                       f"({type(directory).__name__})")
    directory = Path(directory)
    blocker = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ZooError(f"save_pretrained cannot write into {directory}: {blocker} is a file, not a folder "
                       f"(model.safetensors, config.json and README.md are written into a folder)")
    return directory


def _numbers(metrics: Mapping[str, Any]) -> Dict[str, float]:
    """``metrics`` as floats; a value that is not a number is refused naming its key."""
    out = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise ZooError(f"save_pretrained: metrics[{key!r}] must be a number, got {value!r} "
                           f"({type(value).__name__})") from None
    return out


def _finite_metrics(metrics: Mapping[str, Any]) -> Dict[str, float]:
    """``metrics`` without NaN / infinite values (JSON has none; a loaded config refuses them), with a warning."""
    dropped = sorted(k for k, v in metrics.items() if not math.isfinite(float(v)))
    if dropped:
        warnings.warn(f"save_pretrained: metrics {dropped} are not finite numbers and are left out of the config",
                      RuntimeWarning, stacklevel=3)
    return {k: float(v) for k, v in metrics.items() if k not in dropped}


def read_config(directory: Path) -> Tuple[ModelEntry, Dict[str, Any]]:
    """Parse ``config.json`` of a Hub-ready folder into a registry entry and the build kwargs.

    The file is untrusted input: see :mod:`zoo.hub.config` for what is checked."""
    config = _load_folder_config(directory)
    return config.entry(directory / CONFIG_NAME), dict(config.build_kwargs)


def read_folder(directory: Path, pretrained: bool) -> Tuple[ModelEntry, Optional[Path], Dict[str, Any]]:
    """Registry entry, weights file (when ``pretrained``; checked against ``config.json``'s sha256) and build
    kwargs of a folder written by :func:`save_pretrained`."""
    from zoo.hub.config import verify_folder_weights

    if _is_timm_folder(directory):
        return _read_timm_folder(directory, pretrained)
    config = _load_folder_config(directory)
    weights = verify_folder_weights(directory, config, directory / WEIGHTS_NAME) if pretrained else None
    return config.entry(directory / CONFIG_NAME), weights, dict(config.build_kwargs)


def _is_timm_folder(directory: Path) -> bool:
    from zoo.hub.config import is_timm_config, parse_json_object

    path = directory / CONFIG_NAME
    return path.is_file() and is_timm_config(parse_json_object(path))


def _read_timm_folder(directory: Path, pretrained: bool) -> Tuple[ModelEntry, Optional[Path], Dict[str, Any]]:
    """A folder written by timm (``save_for_hf`` / ``push_to_hub``): its ``architecture`` built by the zoo (a timm
    model or a zoo name), its ``model_args`` as build arguments, its ``model.safetensors`` (timm records no
    sha256, so the file is loaded unchecked, with a warning)."""
    from zoo.hub.config import load_timm_config

    config = load_timm_config(directory / CONFIG_NAME)
    weights = None
    if pretrained:
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            others = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pth"))
            hint = f" (found {', '.join(others)}: pickled weights are never loaded)" if others else ""
            raise ZooError(f"{directory} is a timm folder without {WEIGHTS_NAME}{hint}; convert the weights with "
                           f"safetensors.torch.save_file(model.state_dict(), '{directory / WEIGHTS_NAME}')")
        warnings.warn(f"{directory} was written by timm, which records no sha256 of {WEIGHTS_NAME}: the file is "
                      f"loaded unchecked", RuntimeWarning, stacklevel=3)
    return config.entry(directory / CONFIG_NAME), weights, dict(config.model_args)


def _load_folder_config(directory: Path) -> "SavedConfig":
    from zoo.hub.config import load_config

    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ZooError(f"{directory} has no {CONFIG_NAME}; expected a folder written by zoo.save_pretrained")
    return load_config(path)


PIPELINE_TAGS = {"classification": "image-classification", "segmentation": "image-segmentation",
                 "activity-recognition": "video-classification", "generative": "unconditional-image-generation"}
"""The Hub's ``pipeline_tag`` of each task (video prediction has none)."""

DEFAULT_LICENSE = "mit"
"""The card's ``license`` when the config names none: the project's (weights fine-tuned from others' may carry
their source's terms too; the card says which model they started from)."""


def model_card(config: Mapping[str, Any]) -> str:
    """A Hugging Face model card (YAML front matter + markdown) from a config dict.

    The front matter carries ``library_name``, ``license``, ``tags``, ``datasets``, ``pipeline_tag`` and, when the
    config has measured metrics, a ``model-index`` of them; a config written by :func:`zoo.finetune` (with
    ``training``) gets a card saying it was fine-tuned, from which model, on what data, for how long, with what
    result, and how to preprocess its inputs."""
    name = config["name"]
    ref = config.get("reference") or {}
    training = config.get("training") or None
    metrics = config.get("metrics") or {}
    tags = ["spectral-zoo", str(config["family"]), *(str(t) for t in config.get("tags") or [])]
    if training:
        tags.append("fine-tuned")
    licence = config.get("license") or (config.get("pretrained_cfg") or {}).get("license") or DEFAULT_LICENSE
    front: Dict[str, Any] = {"library_name": "spectral-zoo", "license": str(licence), "tags": tags}
    if config.get("dataset"):
        front["datasets"] = [str(config["dataset"])]
    if config.get("task") in PIPELINE_TAGS:
        front["pipeline_tag"] = PIPELINE_TAGS[config["task"]]
    if metrics:
        front["metrics"] = sorted({_metric_type(k) for k in metrics})
        front["model-index"] = [{"name": str(name), "results": [{
            "task": {"type": PIPELINE_TAGS.get(config.get("task"), str(config.get("task")))},
            "dataset": {"name": str(config.get("dataset")), "type": str(config.get("dataset"))},
            "metrics": [{"type": _metric_type(k), "value": float(v), "name": str(k)}
                        for k, v in sorted(metrics.items())],
        }]}]
    front_text = yaml_dump(front)
    lines = ["---", front_text.rstrip("\n"), "---", "", f"# {name}", ""]  # quoted by YAML: a tag cannot add keys
    if training:
        lines += [_fine_tuned_summary(config, training), ""]
    if config.get("description"):
        lines += [config["description"], ""]
    lines += [f"Family `{config['family']}`, builder `{config['builder']}`, task {config['task']}, "
              f"dataset {config['dataset']}.", "", "## Usage", "", "```python", "import zoo",
              f"model = zoo.create(\"hf-hub:ORG/{name}\", pretrained=True)  # or zoo.create(\"local-dir:PATH\")",
              "```", ""]
    if training:
        lines += _preprocessing_lines(config)
    lines += _metrics_lines(metrics, dict((training or {}).get("metrics") or {}), ref.get("metrics") or {})
    lines += ["## Training data", ""]
    if training:
        lines += [_training_lines(training, config), ""]
    data = config.get("data")
    if data and not (training and data == fine_tuned_data(training)):  # a script's fuller account (splits, schedule)
        lines += [data, ""]
    elif not training:
        lines += ["Not trained by this project (architecture only).", ""]
    if ref:
        where = f"section {ref.get('section')}" + (f", Table {ref['table']}" if ref.get("table") else "")
        lines += ["## Reference", "", f"Jiahao Su, *Spectral Methods for Neural Network Designs*, PhD dissertation, "
                  f"University of Maryland, 2022 — {where}.", ""]
        if ref.get("note"):
            lines += [ref["note"], ""]
    return "\n".join(lines)


def yaml_dump(data: Mapping[str, Any]) -> str:
    """``data`` as YAML by ``yaml.safe_dump`` (every value quoted as YAML requires: no value adds a key)."""
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)


def _metric_type(key: str) -> str:
    """The Hub's metric id of a metric key (``val_acc`` -> ``accuracy``); other keys keep their name."""
    bare = str(key).removeprefix("val_").removeprefix("test_")
    return {"acc": "accuracy", "top1": "accuracy", "loss": "loss", "miou": "mean_iou", "iou": "iou",
            "dice": "dice"}.get(bare, bare)


def fine_tuned_data(training: Mapping[str, Any]) -> str:
    """The ``data`` line :func:`zoo.finetune` writes for the run of ``training`` (the card shows the training
    record instead); a script that measured the model writes its own, fuller one (splits, test set, schedule)."""
    classes = training.get("num_classes")
    return (f"Fine-tuned here on {training.get('data')} ({training.get('train_samples')} samples"
            + (f", {classes} classes" if classes else "") + ").")


def _metrics_lines(measured: Mapping[str, Any], validation: Mapping[str, Any], reference: Mapping[str, Any]) -> list:
    """The card's metrics table: the config's metrics (``measured here``: by a script, e.g. on a test set) when
    they are not the training run's best-epoch validation metrics, those, and the dissertation's numbers."""
    columns = [("measured here", measured)] if measured and dict(measured) != dict(validation) else []
    if validation:
        columns.append(("validation (best epoch)", validation))
    columns.append(("dissertation", reference))
    if not any(values for _, values in columns):
        return []
    keys = sorted(set().union(*(set(values) for _, values in columns)))
    lines = ["## Metrics", "", "| metric | " + " | ".join(head for head, _ in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for key in keys:
        lines.append(f"| {_cell(key)} | " + " | ".join(_cell(_fmt(values.get(key))) for _, values in columns) + " |")
    return lines + [""]


def _fine_tuned_summary(config: Mapping[str, Any], training: Mapping[str, Any]) -> str:
    start = ("Fine-tuned", "its trained weights") if training.get("from_weights") else (
        "Trained", "a random initialisation: it had no trained weights")
    classes = training.get("num_classes")
    what = f"{training.get('train_samples')} samples" + (f", {classes} classes" if classes else "")
    best = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted((training.get("metrics") or {}).items()))
    return (f"{start[0]} here with `zoo train` (spectral-zoo {training.get('zoo_version') or '?'}) from "
            f"`{_inline(training.get('base_model'))}` ({start[1]}) on `{_inline(training.get('data'))}` ({what}) "
            f"for up "
            f"to {training.get('epochs')} epoch(s); these are the weights of epoch {training.get('best_epoch')}"
            + (f", the best on validation ({best})." if best else "."))


def _training_lines(training: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    text = (f"`{_inline(training.get('data'))}` ({training.get('data_format')}, {training.get('train_samples')} "
            f"training samples")
    if training.get("val_data") is not None:
        text += f"; validation: `{_inline(training.get('val_data'))}`, {training.get('val_samples')} samples"
    text += ")."
    names = config.get("label_names")
    if names:
        shown = ", ".join(_inline(n) for n in names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        text += f" Classes ({len(names)}, in output order): {shown}."
    return text


def _preprocessing_lines(config: Mapping[str, Any]) -> list:
    cfg = config.get("pretrained_cfg") or {}
    size = "x".join(str(v) for v in (cfg.get("input_size") or config["input"]["shape"]))
    norm = (f"normalised with mean {cfg.get('mean')} and std {cfg.get('std')}" if cfg.get("mean") is not None
            else "not normalised")
    return ["## Preprocessing", "", f"Trained on {size} inputs, {norm}; evaluated after a "
            f"{cfg.get('interpolation') or 'bilinear'} resize (crop_pct {cfg.get('crop_pct', 1.0)}). "
            f"`timm.data.resolve_data_config(model=model)` returns these; "
            f"`model.pretrained_cfg[\"label_names\"]` names the outputs.", ""]


def _inline(text: Any) -> str:
    """``text`` on one line without backticks (it is shown as inline code)."""
    return " ".join(str(text).splitlines()).replace("`", "'")


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell: a ``|`` or a line break would end the cell or the row."""
    return " ".join(str(text).splitlines()).replace("|", "\\|")


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def push_to_hub(model: nn.Module, repo_id: str, *, private: bool = False, commit_message: str = "Upload model",
                metrics: Optional[Mapping[str, float]] = None, data: Optional[str] = None,
                token: Optional[str] = None) -> str:
    """``save_pretrained`` into a temporary folder, then :func:`push_folder_to_hub`; returns the commit URL."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, metrics=metrics, data=data)
        return push_folder_to_hub(tmp, repo_id, private=private, commit_message=commit_message, token=token)


def push_folder_to_hub(folder: str | Path, repo_id: str, *, private: bool = False,
                       commit_message: str = "Upload model", token: Optional[str] = None) -> str:
    """Upload a folder written by ``save_pretrained`` (e.g. a training run's ``best/``) with ``HfApi``, creating
    the repository if needed; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file() or not (folder / CONFIG_NAME).is_file():
        raise ZooError(f"{folder} has no {WEIGHTS_NAME} + {CONFIG_NAME}; expected a folder written by "
                       f"zoo.save_pretrained")
    check_repo_id(repo_id)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    except Exception as exc:  # huggingface_hub's and the network's errors, each with what to do
        raise ZooError(f"could not push {folder} to hf-hub:{repo_id}: {_push_advice(exc)} ({type(exc).__name__}: "
                       f"{exc})".replace("\n", " ")) from exc
    return str(getattr(info, "commit_url", info))


def check_repo_id(repo_id: str) -> None:
    """Refuse a repository id that is not ``NAME`` or ``ORG/NAME`` before anything is contacted."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str):
        raise ZooError(f"{repo_id!r} is not a Hugging Face repository id (expected a str ORG/NAME, got "
                       f"{type(repo_id).__name__})")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ZooError(f"{repo_id!r} is not a Hugging Face repository id (expected ORG/NAME): {exc}") from None


def _push_advice(exc: Exception) -> str:
    """What the user can do about a failed upload."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if type(exc).__name__ == "LocalTokenNotFoundError" or status == 401:
        return "not logged in: run `hf auth login`, set HF_TOKEN, or pass token="
    if status == 403:
        return "this token may not write to that repository: use a write token, or your own ORG/NAME"
    if status is not None:
        return f"the Hub answered HTTP {status}; try again later"
    return "the Hub could not be reached (offline, HF_HUB_OFFLINE set, or a proxy); try again when online"
