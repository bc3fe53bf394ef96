"""Reading and writing safetensors state dicts, and loading one into a model (adapting the head and the input
channels)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from zoo.errors import PluginError, WeightsError
from zoo.registry.schema import ModelEntry

log = logging.getLogger("zoo")


def read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file (other formats are refused: they could run code when unpickled)."""
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: only .safetensors weights are loaded (got a {path.suffix or 'suffix-less'} "
                           f"file); convert it with safetensors.torch.save_file(model.state_dict(), ...)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from exc


def write_safetensors(state: Dict[str, torch.Tensor], path: Path, metadata: Dict[str, str]) -> None:
    """Write ``state`` (contiguous CPU tensors) to ``path`` as safetensors, byte for byte the same for the same tensors
    and metadata: safetensors writes ``__metadata__`` in a random key order (safetensors#584), so the header is
    written again with its keys sorted (offsets are relative to the end of the header, so they do not change)."""
    from safetensors.torch import save

    data = save(state, metadata=metadata or None)  # 0.8.0 writes a broken header for {} tensors with {} metadata
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format aligns the data on 8 bytes
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        f.write(data[8 + size:])


def read_torch_checkpoint(path: Path, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """A training checkpoint (a dict of tensors and plain values) read with ``torch.load(weights_only=True)``.

    Nothing else is ever unpickled: a file holding other Python objects (whose unpickling could run code) or
    that is not a torch checkpoint at all is refused with a :class:`WeightsError` naming the file."""
    import pickle

    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"refusing to load checkpoint {path}: expected only tensors and plain values (numbers, "
                           f"strings, lists, dicts), as zoo checkpoints hold; it holds something else "
                           f"({_unpickler_reason(exc)}). Other objects are never unpickled: that could run code"
                           ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"checkpoint {path} is not a readable torch checkpoint: {exc}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict of tensors and values")
    return state


def _unpickler_reason(exc: Exception) -> str:
    """The one line of torch's weights-only error that says what was refused (not its advice to unpickle)."""
    text = str(exc)
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()] if found else []
    return lines[0].split(" Please use")[0] if lines else text.splitlines()[0]


def _prefixes(names: Optional[Sequence[str] | str]) -> List[str]:
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def adapt_state_dict(state: Dict[str, torch.Tensor], *, classifier: Optional[Sequence[str] | str],
                     drop_classifier: bool, first_conv: Optional[str], in_chans: Optional[int]) -> List[str]:
    """Drop the classifier / adapt the first convolution in place; return the dropped key prefixes."""
    dropped: List[str] = []
    if drop_classifier:
        for prefix in _prefixes(classifier):
            keys = [k for k in state if k == prefix or k.startswith(prefix + ".")]
            if not keys:
                raise WeightsError(f"classifier {prefix!r} not found in the weights (keys start with "
                                   f"{sorted({k.split('.')[0] for k in state})})")
            for k in keys:
                del state[k]
            dropped.append(prefix)
        if dropped:
            log.info("zoo: dropped pretrained classifier %s for a new number of classes", ", ".join(dropped))
    if in_chans is not None and first_conv is not None:
        key = first_conv + ".weight"
        if key not in state:
            raise WeightsError(f"first convolution {first_conv!r} not found in the weights")
        weight = state[key]
        if weight.shape[1] != in_chans:
            state[key] = adapt_input_conv(in_chans, weight)
            log.info("zoo: adapted %s from %d to %d input channels", first_conv, weight.shape[1], in_chans)
    return dropped


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """First-convolution weights for ``in_chans`` inputs. Grayscale-trained weights (one input channel) are
    repeated and scaled by ``1 / in_chans`` (the same response to a gray image); others follow timm's
    ``adapt_input_conv``, which assumes RGB-trained weights (its default leaves a 1-channel weight unchanged)."""
    if weight.dim() == 4 and weight.shape[1] == 1:
        return (weight.float().repeat(1, in_chans, 1, 1) / in_chans).to(weight.dtype)
    from timm.models import adapt_input_conv as timm_adapt_input_conv

    return timm_adapt_input_conv(in_chans, weight)


def load_into(model: nn.Module, state: Dict[str, torch.Tensor], allowed_missing: Sequence[str], source: str) -> None:
    """``load_state_dict`` that tolerates missing keys only under ``allowed_missing`` prefixes; a tensor whose
    kind does not match the model's (integers or booleans for floating-point weights) or a parameter holding NaN
    or infinity is refused (``load_state_dict`` would cast or copy it silently)."""
    check_values(model, state, source)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsError(f"weights from {source} do not fit the model: {exc}") from exc
    missing = [k for k in result.missing_keys
               if not any(k == p or k.startswith(p + ".") for p in allowed_missing)]
    if missing or result.unexpected_keys:
        raise WeightsError(f"weights from {source} do not fit the model: missing keys {missing[:8]}"
                           f"{' ...' if len(missing) > 8 else ''}, unexpected keys {result.unexpected_keys[:8]}"
                           f"{' ...' if len(result.unexpected_keys) > 8 else ''}")


def check_values(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Refuse tensors of ``state`` that ``model`` would take with a silent cast or that are not finite: a
    non-floating tensor for a floating-point one (float16/64 are cast, as timm does) and NaN or +-inf in a
    parameter (no trained weight is; buffers such as attention masks may hold -inf)."""
    own = model.state_dict()
    params = {name for name, _ in model.named_parameters()}
    for key, value in state.items():
        target = own.get(key)
        if target is None:
            continue  # reported as an unexpected key
        if target.is_floating_point() and not value.is_floating_point():
            raise WeightsError(f"weights from {source}: {key} has dtype {value.dtype}, the model's is "
                               f"{target.dtype}; expected floating-point weights (a quantised or mislabelled file?)")
        if key in params and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise WeightsError(f"weights from {source}: {key} holds {bad} NaN or infinite value(s) of "
                               f"{value.numel()}; a trained model's weights are finite (a diverged or corrupted run?)")


def load_weights(model: nn.Module, entry: ModelEntry, path: Path, origin: str, num_classes: Optional[int],
                 in_chans: Optional[int]) -> str:
    """Load the safetensors file ``path`` into ``model`` built from ``entry`` with ``num_classes`` / ``in_chans``:
    the classifier is dropped for a new class count, the first convolution adapted to ``in_chans``. Returns
    ``origin`` (the weights source recorded in the model's config)."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    state = read_safetensors(path)
    new_head = (entry.task == "classification" and num_classes is not None
                and num_classes != entry.input.num_classes)
    classifier = _module_name(entry.input.classifier, model, "classifier")
    if new_head and classifier is None:
        raise WeightsError(f"{entry.name!r} declares no classifier (input.classifier), so its head cannot be "
                           f"replaced for num_classes={num_classes}")
    first_conv = _module_name(entry.input.first_conv, model, "first_conv")
    channels = entry.input.channels
    if in_chans is not None and in_chans != channels and first_conv is None:
        adapt = getattr(model, "adapt_pretrained_in_chans", None)
        if callable(adapt):  # input channels read by more than one tensor: the model maps the saved ones itself
            state = _adapted_by_model(adapt, state, entry, channels, in_chans)
        else:
            raise WeightsError(f"{entry.name!r} declares no first convolution (input.first_conv), so its pretrained "
                               f"weights for {channels} input channel(s) cannot be adapted to in_chans={in_chans}; use "
                               f"pretrained=False, or in_chans={channels}")
    if first_conv is not None and f"{first_conv}.weight" not in state and _is_buffer(model, f"{first_conv}.weight"):
        first_conv = None  # a fixed input mix the file predates: the model built for in_chans holds its own
    dropped = adapt_state_dict(state, classifier=classifier, drop_classifier=new_head,
                               first_conv=first_conv, in_chans=in_chans)
    load_into(model, state, dropped, origin)
    return origin


def _adapted_by_model(adapt: Any, state: Dict[str, torch.Tensor], entry: ModelEntry, channels: Optional[int],
                      in_chans: int) -> Dict[str, torch.Tensor]:
    """``model.adapt_pretrained_in_chans(state)`` (see docs/plugins.md); a ``ValueError`` it raises (weights it
    cannot adapt) becomes a :class:`WeightsError` naming the model and both channel counts."""
    try:
        adapted = adapt(state)
    except ValueError as exc:
        raise WeightsError(f"pretrained weights of {entry.name!r} for {channels} input channel(s) cannot be adapted "
                           f"to in_chans={in_chans}: {exc}") from None
    if not isinstance(adapted, dict):
        raise PluginError(f"the model's adapt_pretrained_in_chans returned "
                          f"{type(adapted).__name__}, expected a state dict (family {entry.family!r})")
    return adapted


def _is_buffer(model: nn.Module, key: str) -> bool:
    """Whether ``key`` of the state dict is a buffer (fixed, never trained) of ``model``."""
    return key in dict(model.named_buffers())


def _module_name(declared: Any, model: nn.Module, key: str) -> Any:
    """The entry's ``declared`` module name, else the one the model's own (timm) ``pretrained_cfg`` gives."""
    if declared is not None:
        return declared
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg.get(key) if isinstance(cfg, dict) else None
