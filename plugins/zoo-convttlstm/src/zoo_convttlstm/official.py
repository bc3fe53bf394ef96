"""Load state dicts of the official Conv-TT-LSTM code (github.com/NVlabs/conv-tt-lstm) into the zoo's layout.

The official ``ConvLSTMNet`` and the zoo's :class:`~zoo_convttlstm.network.VideoPredictionNet` compute the same
network (same blocks, skips, 1x1 output convolution, zero initial states); only the parameters are laid out
differently. What :func:`convert_official_state_dict` maps, per recurrent layer ``layers.b{b}l{l}`` (layer
``sum(layers_per_block[:b]) + l`` of the zoo):

* **Gate rows.** The official cells split the gate convolution's output as ``[i, f, o, g]``; the zoo (Eq. 4.1a/4.2
  of the text) as ``[i, f, g, o]``. The last two row blocks of every gate weight and bias are swapped.
* **ConvLSTM** ``conv.weight`` (4 Cout, Cin + Cout, K, K) -> ``weight`` (inputs first in both).
* **Conv-TT-LSTM**, order N, official ``layers.0 .. layers.{N-1}`` and ``layers_.0 .. layers_.{N-1}``. The official
  Horner loop starts from the oldest window (``l = 0``) and ends with ``layers.{N-1}`` on ``[X; T]``, so the zoo's
  factor ``G(j)`` is official ``layers.{N-j}`` and its preprocessing kernel ``P(i)`` is official ``layers_.{N-i}``:

  - ``gate_weight``/``gate_bias`` (W and G(1)) <- ``layers.{N-1}`` (rows permuted as above);
  - ``tt_weights.{j}``/``tt_biases.{j}`` (G(j+2)) <- ``layers.{N-2-j}``;
  - ``prep_weight`` rows of P(i), window entry d <- ``layers_.{N-i}`` temporal tap ``d'``, and ``prep_bias``.
    The official taps run oldest to newest over the window, the zoo's newest first: ``d' = D - 1 - d`` for the
    sliding window (``code/``: Conv3d weight (C(i), Cout, K, K, D); ``code_opt/``: Conv2d weight
    (C(i), D Cout, K, K) on the states concatenated over channels, oldest first). For the fixed window
    (``eval_paper/`` version ``"v3"``) the official window is the whole history rotated by ``l``, so
    ``d' = (M - 1 - d - l) mod M``.

* ``layers.output`` -> ``output``.

The zoo model is checked key by key and shape by shape; any missing, unexpected or mis-shaped parameter raises
:class:`OfficialCheckpointError` naming it. Nothing is unpickled here: the caller loads the file with
``torch.load(path, weights_only=True)`` and passes the mapping (a bare state dict, or the ``{"model_state_dict":
...}`` wrapper the official scripts save; a ``module.`` prefix from DataParallel/DDP is removed).

The official ``eval_paper/`` cell advances its history pointer modulo the *order* instead of the number of steps; for
``steps > order`` that official model never writes the older history slots, which no zoo model reproduces. The two
released checkpoints (``convttlstm-mnist.pt``, ``convttlstm-kth.pt``) use ``steps = order = 3``, where both agree.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from zoo.errors import ZooError

OFFICIAL_GATE_ORDER = ("i", "f", "o", "g")
ZOO_GATE_ORDER = ("i", "f", "g", "o")

_KEY = re.compile(r"layers\.(?:b(\d+)l(\d+)\.(?:(conv)|(layers_?)\.(\d+))|(output))\.(weight|bias)")


class OfficialCheckpointError(ZooError, ValueError):
    """An official Conv-TT-LSTM state dict does not fit the zoo model (names the keys and shapes)."""


def permute_gate_rows(t: torch.Tensor) -> torch.Tensor:
    """Rows [i, f, o, g] -> [i, f, g, o] along dim 0 (the permutation is its own inverse)."""
    if t.shape[0] % 4:
        raise OfficialCheckpointError(f"gate tensor has {t.shape[0]} rows, not a multiple of 4 (shape {tuple(t.shape)})")
    i, f, o, g = t.chunk(4, dim=0)
    return torch.cat([i, f, g, o], dim=0)


def _unwrap(state: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    if "model_state_dict" in state and isinstance(state["model_state_dict"], Mapping):
        state = state["model_state_dict"]
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        state = {k[len("module.") :]: v for k, v in state.items()}
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise OfficialCheckpointError(f"official state dict entries must be tensors; not tensors: {bad}")
    return dict(state)


def _parse(state: Mapping[str, torch.Tensor]) -> Tuple[Dict[Tuple[int, int], Dict[str, Any]], Dict[str, torch.Tensor]]:
    """Group official keys per layer (b, l): {'conv': {...}} or {'layers': {j: {...}}, 'layers_': {j: {...}}}."""
    cells: Dict[Tuple[int, int], Dict[str, Any]] = {}
    output: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        m = _KEY.fullmatch(key)
        if m is None:
            unknown.append(key)
            continue
        b, l, conv, group, j, out, kind = m.groups()
        if out:
            output[kind] = value
            continue
        cell = cells.setdefault((int(b), int(l)), {})
        if conv:
            cell.setdefault("conv", {})[kind] = value
        else:
            cell.setdefault(group, {}).setdefault(int(j), {})[kind] = value
    if unknown:
        raise OfficialCheckpointError(
            f"unexpected keys in the official state dict (not layers.b<B>l<L>.conv|layers|layers_.*, layers.output.*): "
            f"{sorted(unknown)}"
        )
    if "weight" not in output:
        raise OfficialCheckpointError("missing key in the official state dict: layers.output.weight")
    for (b, l), cell in cells.items():
        if "conv" in cell and ("layers" in cell or "layers_" in cell):
            raise OfficialCheckpointError(f"layers.b{b}l{l} mixes a ConvLSTM 'conv' with Conv-TT-LSTM 'layers'")
        for group in ("layers", "layers_"):
            if "conv" not in cell:
                found = sorted(cell.get(group, {}))
                if found != list(range(len(found))) or not found:
                    raise OfficialCheckpointError(f"layers.b{b}l{l}.{group}: expected indices 0..N-1, found {found}")
        if "conv" not in cell and len(cell["layers"]) != len(cell["layers_"]):
            n = max(len(cell["layers"]), len(cell["layers_"]))
            absent = [f"layers.b{b}l{l}.{g}.{j}.weight" for g in ("layers", "layers_") for j in range(n)
                      if j not in cell[g]]
            raise OfficialCheckpointError(
                f"layers.b{b}l{l}: {len(cell['layers'])} 'layers' but {len(cell['layers_'])} 'layers_' (one each per "
                f"order); missing keys in the official state dict: {absent}"
            )
        parts = [cell["conv"]] if "conv" in cell else list(cell["layers"].values()) + list(cell["layers_"].values())
        for p in parts:
            if "weight" not in p:
                raise OfficialCheckpointError(f"layers.b{b}l{l}: a convolution has a bias but no weight")
    return cells, output


def _layout(cells: Mapping[Tuple[int, int], Any]) -> List[int]:
    blocks = sorted({b for b, _ in cells})
    if blocks != list(range(len(blocks))):
        raise OfficialCheckpointError(f"official blocks must be b0..b<n-1>, found {['b%d' % b for b in blocks]}")
    lpb = []
    for b in blocks:
        ls = sorted(l for bb, l in cells if bb == b)
        if ls != list(range(len(ls))):
            raise OfficialCheckpointError(f"official block b{b} must have layers l0..l<n-1>, found {ls}")
        lpb.append(len(ls))
    return lpb


def _prep_taps(w: torch.Tensor, hidden: int, where: str) -> torch.Tensor:
    """Official preprocessing weight -> (C(i), Cout, K, K, D) with the temporal taps oldest first."""
    if w.dim() == 5:  # code/: Conv3d over states stacked on a last (time) axis
        return w
    if w.dim() == 4 and w.shape[1] % hidden == 0:  # code_opt/: Conv2d over states concatenated over channels
        r, dc, k1, k2 = w.shape
        return w.view(r, dc // hidden, hidden, k1, k2).permute(0, 2, 3, 4, 1)
    raise OfficialCheckpointError(
        f"{where}.weight has shape {tuple(w.shape)}: expected (C(i), Cout, K, K, D) or (C(i), D*Cout, K, K) with "
        f"Cout = {hidden}"
    )


def _convert_tt_cell(cell: Mapping[str, Any], prefix: str, where: str, window: str) -> Dict[str, torch.Tensor]:
    layers, prep = cell["layers"], cell["layers_"]
    n = len(layers)
    top = layers[n - 1]
    hidden = top["weight"].shape[0] // 4
    out = {f"{prefix}.gate_weight": permute_gate_rows(top["weight"])}
    if "bias" in top:
        out[f"{prefix}.gate_bias"] = permute_gate_rows(top["bias"])
    for j in range(n - 1):  # G(j + 2) <- layers.{n - 2 - j}
        src = layers[n - 2 - j]
        out[f"{prefix}.tt_weights.{j}"] = src["weight"]
        if "bias" in src:
            out[f"{prefix}.tt_biases.{j}"] = src["bias"]
    blocks, biases = [], []
    for i in range(1, n + 1):  # P(i) <- layers_.{n - i}
        l = n - i
        taps = _prep_taps(prep[l]["weight"], hidden, f"{where}.layers_.{l}")
        d_total = taps.shape[-1]
        if window == "sliding":
            order_ = [d_total - 1 - d for d in range(d_total)]
        else:
            order_ = [(d_total - 1 - d - l) % d_total for d in range(d_total)]
        # zoo rows of P(i): (d, C(i)) blocks, newest state first
        blocks.append(torch.cat([taps[..., dp] for dp in order_], dim=0))
        if "bias" in prep[l]:
            biases.append(prep[l]["bias"])
    out[f"{prefix}.prep_weight"] = torch.cat(blocks, dim=0)
    if biases:
        if len(biases) != n:
            raise OfficialCheckpointError(f"{where}.layers_: only some preprocessing convolutions have a bias")
        out[f"{prefix}.prep_bias"] = torch.cat(biases, dim=0)
    return out


def official_architecture(state: Mapping[str, Any], window: str = "sliding", output_sigmoid: bool = False) -> Dict[str, Any]:
    """:class:`VideoPredictionNet` keyword arguments for an official state dict (shapes only; nothing is loaded).

    ``window`` ("sliding": official ``code/``, ``code_opt/`` and ``eval_paper`` "v4"; "fixed": ``eval_paper`` "v3")
    and ``output_sigmoid`` (True for the KTH models) are not recorded in a state dict and must be given."""
    if window not in ("sliding", "fixed"):
        raise ValueError(f"window must be 'sliding' or 'fixed', got {window!r}")
    cells, output = _parse(_unwrap(state))
    lpb = _layout(cells)
    first = cells[(0, 0)]
    is_tt = "conv" not in first
    if any(("conv" not in c) != is_tt for c in cells.values()):
        raise OfficialCheckpointError("official layers mix ConvLSTM and Conv-TT-LSTM cells; the zoo builds one kind")
    hidden, kernel = [], None
    for b, n in enumerate(lpb):
        c = cells[(b, 0)]
        w = c["conv"]["weight"] if not is_tt else c["layers"][len(c["layers"]) - 1]["weight"]
        hidden.append(w.shape[0] // 4)
        kernel = w.shape[-1]
    in_channels = output["weight"].shape[0]
    nb = len(lpb)
    skip: Optional[int] = None
    for s in [None] + list(range(1, nb)):
        expect_out = hidden[-1] + (hidden[nb - 1 - s] if s is not None and nb - 1 >= s else 0)
        if expect_out != output["weight"].shape[1]:
            continue
        ok = True
        for b in range(1, nb):
            c = cells[(b, 0)]
            cin = (c["conv"]["weight"].shape[1] - hidden[b]) if not is_tt else (
                c["layers"][len(c["layers"]) - 1]["weight"].shape[1] - c["layers_"][len(c["layers_"]) - 1]["weight"].shape[0])
            if cin != hidden[b - 1] + (hidden[b - 1 - s] if s is not None and b - 1 >= s else 0):
                ok = False
        if ok:
            skip = s
            break
    else:
        raise OfficialCheckpointError("no skip stride fits the official layer shapes")
    kwargs: Dict[str, Any] = dict(in_channels=in_channels, cell="convttlstm" if is_tt else "convlstm",
                                  hidden_channels=hidden, layers_per_block=lpb, skip_stride=skip,
                                  kernel_size=int(kernel), output_sigmoid=output_sigmoid)
    if is_tt:
        n = len(first["layers"])
        d = _prep_taps(first["layers_"][0]["weight"], hidden[0], "layers.b0l0.layers_.0").shape[-1]
        ranks = [int(first["layers_"][n - i]["weight"].shape[0]) for i in range(1, n + 1)]
        kwargs["cell_kwargs"] = dict(order=n, steps=d + n - 1 if window == "sliding" else d,
                                     ranks=ranks if len(set(ranks)) > 1 else ranks[0], window=window)
        if "bias" not in first["layers"][n - 1]:  # the official bias=False
            kwargs["cell_kwargs"]["bias"] = False
    return kwargs


def convert_official_state_dict(
    state: Mapping[str, Any], model: Optional[torch.nn.Module] = None, *, window: Optional[str] = None
) -> Dict[str, torch.Tensor]:
    """Map an official NVlabs/conv-tt-lstm ``ConvLSTMNet`` state dict onto the zoo's ``VideoPredictionNet`` keys.

    Args:
        state: the official state dict (tensors only; or ``{"model_state_dict": ...}``; a ``module.`` prefix is
            removed). Load it with ``torch.load(path, map_location="cpu", weights_only=True)``.
        model: the zoo model to fit. Without it, one is built from the shapes (:func:`official_architecture`) to
            check the result against.
        window: "sliding" or "fixed" (the official ``eval_paper`` "v3"); taken from ``model`` when given, else
            "sliding".

    Returns a state dict for ``model.load_state_dict(..., strict=True)``. Raises :class:`OfficialCheckpointError`
    naming every missing, unexpected or mis-shaped key."""
    flat = _unwrap(state)
    cells, output = _parse(flat)
    lpb = _layout(cells)
    if model is None:
        from .network import VideoPredictionNet

        model = VideoPredictionNet(**official_architecture(flat, window=window or "sliding"))
    windows = {getattr(m, "window", None) for m in getattr(model, "layers", [])} - {None}
    if window is None:
        window = windows.pop() if len(windows) == 1 else "sliding"
    elif windows and windows != {window}:
        raise OfficialCheckpointError(f"window={window!r} but the zoo model's cells use {sorted(windows)}")
    if window not in ("sliding", "fixed"):
        raise ValueError(f"window must be 'sliding' or 'fixed', got {window!r}")
    target_lpb = list(getattr(model, "layers_per_block", lpb))
    if target_lpb != lpb:
        raise OfficialCheckpointError(f"official layers per block {lpb} but the zoo model has {target_lpb}")
    out: Dict[str, torch.Tensor] = {}
    k = 0
    for b, n in enumerate(lpb):
        for l in range(n):
            cell, where, prefix = cells[(b, l)], f"layers.b{b}l{l}", f"layers.{k}"
            if "conv" in cell:
                out[f"{prefix}.weight"] = permute_gate_rows(cell["conv"]["weight"])
                if "bias" in cell["conv"]:
                    out[f"{prefix}.bias"] = permute_gate_rows(cell["conv"]["bias"])
            else:
                out.update(_convert_tt_cell(cell, prefix, where, window))
            k += 1
    out["output.weight"] = output["weight"]
    if "bias" in output:
        out["output.bias"] = output["bias"]
    _check_against(out, model)
    return out


def _check_against(out: Mapping[str, torch.Tensor], model: torch.nn.Module) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    shapes = [
        f"{k}: converted {tuple(out[k].shape)}, model {tuple(expected[k].shape)}"
        for k in sorted(set(out) & set(expected))
        if out[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing (the zoo model has them, the official state dict gives none): {missing}")
        if unexpected:
            parts.append(f"unexpected (converted, but not in the zoo model): {unexpected}")
        if shapes:
            parts.append("shape mismatches: " + "; ".join(shapes))
        raise OfficialCheckpointError(
            "the official state dict does not fit the zoo model (check order/steps/ranks/window, kernel size, "
            "channels and skips): " + " | ".join(parts)
        )
