"""Official NVlabs/conv-tt-lstm checkpoints load into the zoo (issue 18).

``official_forward`` below is an independent, functional re-implementation of the official ``ConvLSTMNet`` forward
(``code/convlstmnet.py`` + ``code/convlstmcell.py``, and ``eval_paper``'s fixed-window "v3"), written from reading
that code: a circular buffer of ``steps`` hidden states with a pointer, the Horner loop from the *oldest* window
(``layers_.0``) to ``layers.{N-1}`` on ``[X; T]``, Conv3d over states stacked oldest first on a last axis, gate rows
split ``[i, f, o, g]``. It reads the official-layout state dict directly; the zoo model only sees the converted one.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo_convttlstm import OfficialCheckpointError, convert_official_state_dict, official_architecture
from zoo_convttlstm.network import VideoPredictionNet

D = torch.float64


def _conv2d(sd, name, x):
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, sd.get(f"{name}.bias"), padding=w.shape[-1] // 2)


class _OfficialTT:
    """One official ConvTTLSTMCell's state and step, on the official parameter names."""

    def __init__(self, sd, name, order, steps, version):
        self.sd, self.name, self.order, self.steps, self.version = sd, name, order, steps, version
        self.lags = steps - order + 1 if version == "v4" else steps

    def step(self, x, first):
        sd, name = self.sd, self.name
        hidden = sd[f"{name}.layers.{self.order - 1}.weight"].shape[0] // 4
        if first:
            b, _, h, w = x.shape
            self.hs = [x.new_zeros(b, hidden, h, w) for _ in range(self.steps)]
            self.hp = 0
            self.c = x.new_zeros(b, hidden, h, w)
        for l in range(self.order):
            ip = self.hp if l == 0 else (ip + 1) % self.steps
            states = self.hs[ip:] + self.hs[:ip]
            if self.version == "v4":
                states = states[: self.lags]
            stacked = torch.stack(states, dim=-1)
            w = sd[f"{name}.layers_.{l}.weight"]
            p = w.shape[-2] // 2
            y = F.conv3d(stacked, w, sd.get(f"{name}.layers_.{l}.bias"), padding=(p, p, 0)).squeeze(-1)
            temp = y if l == 0 else y + _conv2d(sd, f"{name}.layers.{l - 1}", temp)
        cc = _conv2d(sd, f"{name}.layers.{self.order - 1}", torch.cat([x, temp], dim=1))
        i, f, o, g = torch.split(cc, hidden, dim=1)
        self.c = torch.sigmoid(f) * self.c + torch.sigmoid(i) * torch.tanh(g)
        out = torch.sigmoid(o) * torch.tanh(self.c)
        self.hs[self.hp] = out
        self.hp = (self.hp + 1) % self.steps
        return out


class _OfficialLSTM:
    def __init__(self, sd, name):
        self.sd, self.name = sd, name

    def step(self, x, first):
        hidden = self.sd[f"{self.name}.conv.weight"].shape[0] // 4
        if first:
            b, _, h, w = x.shape
            self.h, self.c = x.new_zeros(b, hidden, h, w), x.new_zeros(b, hidden, h, w)
        cc = _conv2d(self.sd, f"{self.name}.conv", torch.cat([x, self.h], dim=1))
        i, f, o, g = torch.split(cc, hidden, dim=1)
        self.c = torch.sigmoid(f) * self.c + torch.sigmoid(i) * torch.tanh(g)
        self.h = torch.sigmoid(o) * torch.tanh(self.c)
        return self.h


def official_forward(sd, inputs, future, lpb, skip, cell, order=3, steps=3, version="v4", sigmoid=False):
    cells = {}
    for b, n in enumerate(lpb):
        for l in range(n):
            name = f"layers.b{b}l{l}"
            cells[name] = _OfficialTT(sd, name, order, steps, version) if cell == "convttlstm" else _OfficialLSTM(sd, name)
    t_in = inputs.shape[1]
    outputs = []
    for t in range(t_in + future - 1):
        x = inputs[:, t] if t < t_in else outputs[-1]
        queue = []
        for b, n in enumerate(lpb):
            for l in range(n):
                x = cells[f"layers.b{b}l{l}"].step(x, t == 0)
            queue.append(x)
            if skip is not None and b >= skip:
                x = torch.cat([x, queue.pop(0)], dim=1)
        y = F.conv2d(x, sd["layers.output.weight"], sd["layers.output.bias"])
        outputs.append(torch.sigmoid(y) if sigmoid else y)
    return torch.stack(outputs[-future:], dim=1)


def official_state_dict(cin, hidden, lpb, skip, cell, k=3, order=3, steps=3, ranks=2, version="v4", seed=0):
    """Random tensors under the official names and shapes (``ConvLSTMNet.__init__``)."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: 0.3 * torch.randn(*shape, generator=g, dtype=D)
    lags = steps - order + 1 if version == "v4" else steps
    sd = {}
    nb = len(lpb)
    for b in range(nb):
        for l in range(lpb[b]):
            if l > 0:
                ch = hidden[b]
            elif b == 0:
                ch = cin
            else:
                ch = hidden[b - 1] + (hidden[b - 1 - skip] if skip is not None and b > skip else 0)
            name, c = f"layers.b{b}l{l}", hidden[b]
            if cell == "convlstm":
                sd[f"{name}.conv.weight"], sd[f"{name}.conv.bias"] = rnd(4 * c, ch + c, k, k), rnd(4 * c)
                continue
            for j in range(order):
                cin_j, cout_j = (ranks, ranks) if j < order - 1 else (ranks + ch, 4 * c)
                sd[f"{name}.layers.{j}.weight"], sd[f"{name}.layers.{j}.bias"] = rnd(cout_j, cin_j, k, k), rnd(cout_j)
                sd[f"{name}.layers_.{j}.weight"] = rnd(ranks, c, k, k, lags)
                sd[f"{name}.layers_.{j}.bias"] = rnd(ranks)
    out_ch = hidden[-1] + (hidden[-1 - skip] if skip is not None and nb > skip else 0)
    sd["layers.output.weight"], sd["layers.output.bias"] = rnd(cin, out_ch, 1, 1), rnd(cin)
    return sd


HIDDEN, LPB, SKIP = (3, 4, 4, 3), (2, 1, 1, 2), 2
CASES = [
    ("convttlstm", dict(order=3, steps=3, version="v4")),  # the released checkpoints' configuration
    ("convttlstm", dict(order=3, steps=5, version="v4")),  # sliding window of D = 3 states
    ("convttlstm", dict(order=2, steps=4, version="v4")),
    ("convttlstm", dict(order=3, steps=4, version="v3")),  # fixed window (eval_paper "v3")
    ("convlstm", {}),
]


def _zoo_model(cell, kw, sigmoid=False):
    window = {"v4": "sliding", "v3": "fixed"}[kw["version"]] if cell == "convttlstm" else None
    cell_kwargs = dict(order=kw["order"], steps=kw["steps"], ranks=2, window=window) if window else None
    return VideoPredictionNet(2, cell, hidden_channels=HIDDEN, layers_per_block=LPB, skip_stride=SKIP, kernel_size=3,
                              cell_kwargs=cell_kwargs, output_sigmoid=sigmoid).to(D)


@pytest.mark.parametrize("cell,kw", CASES)
def test_converted_official_weights_give_the_official_outputs(cell, kw):
    sd = official_state_dict(2, HIDDEN, LPB, SKIP, cell, **kw)
    inputs = torch.rand(2, 5, 2, 7, 6, generator=torch.Generator().manual_seed(1), dtype=D)
    ref = official_forward(sd, inputs, 4, LPB, SKIP, cell, **kw)
    model = _zoo_model(cell, kw)
    model.load_state_dict(convert_official_state_dict(sd, model), strict=True)
    with torch.no_grad():
        got = model(inputs, future_frames=4)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-10
    # without the gate-row permutation the outputs are far apart: the test above sees the order
    assert ref.abs().max() > 0.1
    swapped = {k: v.clone() for k, v in model.state_dict().items()}
    for key in swapped:
        if key.endswith(("gate_weight", "gate_bias")) or (cell == "convlstm" and key.startswith("layers.")):
            i, f, g, o = swapped[key].chunk(4, dim=0)
            swapped[key] = torch.cat([i, f, o, g])
    model.load_state_dict(swapped)
    with torch.no_grad():
        assert (model(inputs, future_frames=4) - ref).abs().max() > 1e-3


def test_architecture_is_read_from_the_shapes_and_the_wrappers_are_removed():
    kw = dict(order=3, steps=5, version="v4")
    sd = official_state_dict(2, HIDDEN, LPB, SKIP, "convttlstm", **kw)
    arch = official_architecture(sd, output_sigmoid=True)
    assert arch == dict(in_channels=2, cell="convttlstm", hidden_channels=list(HIDDEN), layers_per_block=list(LPB),
                        skip_stride=SKIP, kernel_size=3, output_sigmoid=True,
                        cell_kwargs=dict(order=3, steps=5, ranks=2, window="sliding"))
    wrapped = {"model_state_dict": {"module." + k: v for k, v in sd.items()}}  # eval_paper's file, saved under DDP
    model = VideoPredictionNet(**arch).to(D)
    model.load_state_dict(convert_official_state_dict(wrapped), strict=True)  # no model: built from the shapes
    inputs = torch.rand(1, 4, 2, 6, 6, generator=torch.Generator().manual_seed(2), dtype=D)
    with torch.no_grad():
        ref = official_forward(sd, inputs, 3, LPB, SKIP, "convttlstm", **kw, sigmoid=True)
        assert (model(inputs, future_frames=3) - ref).abs().max() < 1e-10
    assert official_architecture(official_state_dict(1, (4, 4), (1, 1), None, "convlstm"))["skip_stride"] is None


def test_cells_without_biases():
    kw = dict(order=3, steps=4, version="v4")
    sd = {k: v for k, v in official_state_dict(2, HIDDEN, LPB, SKIP, "convttlstm", **kw).items()
          if not (k.endswith("bias") and k.startswith("layers.b"))}
    arch = official_architecture(sd)
    assert arch["cell_kwargs"]["bias"] is False
    model = VideoPredictionNet(**arch).to(D)
    model.load_state_dict(convert_official_state_dict(sd, model), strict=True)
    inputs = torch.rand(1, 4, 2, 5, 5, generator=torch.Generator().manual_seed(3), dtype=D)
    with torch.no_grad():
        assert (model(inputs, future_frames=2) - official_forward(sd, inputs, 2, LPB, SKIP, "convttlstm", **kw)).abs().max() < 1e-10


def test_code_opt_layout_converts_like_code():
    """code_opt/ keeps the preprocessing as a Conv2d over the states concatenated over channels, oldest first."""
    sd = official_state_dict(2, HIDDEN, LPB, SKIP, "convttlstm", order=3, steps=5)
    flat = {}
    for key, v in sd.items():
        if ".layers_." in key and key.endswith("weight"):
            r, c, k1, k2, d = v.shape
            v = v.permute(0, 4, 1, 2, 3).reshape(r, d * c, k1, k2)
        flat[key] = v
    a, b = convert_official_state_dict(sd), convert_official_state_dict(flat)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_errors_name_missing_unexpected_and_mis_shaped_keys():
    kw = dict(order=3, steps=3, version="v4")
    sd = official_state_dict(2, HIDDEN, LPB, SKIP, "convttlstm", **kw)
    model = _zoo_model("convttlstm", kw)
    extra = dict(sd, **{"layers.b0l0.extra.weight": torch.zeros(1)})
    with pytest.raises(OfficialCheckpointError, match=r"unexpected keys.*layers\.b0l0\.extra\.weight"):
        convert_official_state_dict(extra, model)
    missing = {k: v for k, v in sd.items() if k != "layers.b1l0.layers.2.bias"}
    with pytest.raises(OfficialCheckpointError, match=r"missing .*layers\.2\.gate_bias"):
        convert_official_state_dict(missing, model)
    no_prep = {k: v for k, v in sd.items() if not k.startswith("layers.b1l0.layers_.2")}
    with pytest.raises(OfficialCheckpointError, match=r"missing keys in the official state dict: \['layers\.b1l0\.layers_\.2\.weight'\]"):
        convert_official_state_dict(no_prep, model)
    other = _zoo_model("convttlstm", dict(order=3, steps=5, version="v4"))  # D = 3 states, the dict has D = 1
    with pytest.raises(OfficialCheckpointError, match=r"shape mismatches: layers\.0\.prep_weight: converted \(6, 3, 3, 3\), model \(18, 3, 3, 3\)"):
        convert_official_state_dict(sd, other)
    with pytest.raises(OfficialCheckpointError, match=r"missing .*layers\.0\.weight.*unexpected .*layers\.0\.gate_weight"):
        convert_official_state_dict(sd, _zoo_model("convlstm", {}))
    with pytest.raises(OfficialCheckpointError, match="window='fixed'"):
        convert_official_state_dict(sd, model, window="fixed")
    with pytest.raises(OfficialCheckpointError, match="must be tensors"):
        convert_official_state_dict(dict(sd, note="x"), model)


def test_the_released_checkpoint_layout_fits_the_registry_models():
    """The official test script builds (3, 3, 3, 3) x (32, 48, 48, 32), skip 2, K = 5, order = steps = 3, ranks 8:
    exactly the registry's convttlstm-mnist / convttlstm-kth layout."""
    import zoo

    sd = official_state_dict(1, (32, 48, 48, 32), (3, 3, 3, 3), 2, "convttlstm", k=5, order=3, steps=3, ranks=8)
    model = zoo.create("convttlstm-mnist")
    model.load_state_dict(convert_official_state_dict(sd, model), strict=True)
    assert sum(v.numel() for v in sd.values()) == sum(p.numel() for p in model.parameters()) == 2_687_281
