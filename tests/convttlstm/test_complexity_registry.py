"""Registry entries, parameter counts and FLOPs against Table 4.2, and measured vs counted multiplications."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo.registry.schema import ModelEntry
from zoo_convttlstm.complexity import count_parameters, table_4_2_gflops
from zoo_convttlstm.family import FAMILY
from zoo_convttlstm.network import VideoPredictionNet

REGISTRY = Path(FAMILY.registry)
ENTRIES = yaml.safe_load(REGISTRY.read_text())["models"]
LAYERS = [(1, 32), (32, 32), (32, 32), (32, 48), (48, 48), (48, 48), (48, 48), (48, 48), (48, 48), (80, 32),
          (32, 32), (32, 32)]  # (Cin, Cout) of the 12 layers with skips (3,9), (6,12); output conv 80 -> 1


def closed_form_params(cell: str, k: int = 5, order: int = 3, steps: int = 3, rank: int = 8) -> int:
    """Sizes of Table 4.1: W [K,K,4Cout,Cin], K [K,K,4Cout,Cout] (ConvLSTM) or G(1) [K,K,4Cout,C(1)],
    G(i) [K,K,C(i-1),C(i)], P(i) [D,K,K,Cout,C(i)] with biases (Conv-TT-LSTM)."""
    total = 80 * 1 + 1
    d = steps - order + 1
    for cin, cout in LAYERS:
        total += cin * 4 * cout * k * k + 4 * cout
        if cell == "convlstm":
            total += cout * 4 * cout * k * k
        else:
            total += rank * 4 * cout * k * k + (order - 1) * (rank * rank * k * k + rank) + order * (d * cout * rank * k * k + rank)
    return total


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_registry_entries_validate(name):
    entry = ModelEntry(name=name, **ENTRIES[name])
    assert entry.family == "convttlstm" and entry.builder in FAMILY.builders
    assert entry.reference is not None
    # reduced demo models carry measured weights.metrics; the text's M = 5 configuration has no table number
    assert entry.reference.metrics or {"reduced", "text-hyperparameters"} & set(entry.tags)


@pytest.mark.parametrize(
    "name,params_m,flops_g",
    [("convlstm-mnist", 3.97, 15.88), ("convttlstm-mnist", 2.69, 10.76), ("convlstm-kth", 3.97, 55.83),
     ("convttlstm-kth", 2.69, 37.83)],
)
def test_table_4_2_parameters_and_flops(name, params_m, flops_g):
    entry = ModelEntry(name=name, **ENTRIES[name])
    model = FAMILY.builder(entry.builder)(**entry.args)
    params = count_parameters(model)
    assert params == closed_form_params(entry.args["cell"])
    assert round(params / 1e6, 2) == params_m == entry.reference.metrics["params_m"]
    assert entry.reference.metrics["flops_g"] == flops_g
    rows = FAMILY.summary(model, entry)
    assert rows["table_4_2_gflops"] == flops_g
    side = 64 if "mnist" in name else 120
    assert round(table_4_2_gflops(params, side), 2) == flops_g
    # the exact count: multiplications per pixel equal the weights (all convolutions are stride-1 "same")
    h, w = entry.input.shape[-2:]
    biases = sum(p.numel() for n, p in model.named_parameters() if "bias" in n)
    assert model.macs_per_step(h, w) == (params - biases) * h * w


def test_text_hyperparameters_m5_do_not_give_table_count():
    """With M=5 (Sec. 4.7.3 text) the same net has 3.26 M parameters, not Table 4.2's 2.69 M."""
    m = VideoPredictionNet(cell="convttlstm", cell_kwargs=dict(order=3, steps=5, ranks=8))
    assert count_parameters(m) == closed_form_params("convttlstm", steps=5)
    assert round(count_parameters(m) / 1e6, 2) == 3.26


@pytest.mark.parametrize("dataset", ["mnist", "kth"])
def test_m3_and_m5_entries_side_by_side(dataset):
    """Issue 18: the registry names both. ``convttlstm-{dataset}`` (M = 3) is Table 4.2's model, 2,687,281 = 2.69 M;
    ``convttlstm-{dataset}-m5`` is the text's M = 5 (Sec. 4.7.3), 3,263,281 = 3.26 M; otherwise identical."""
    from zoo_convttlstm.complexity import count_parameters as count

    m3, m5 = zoo.model_info(f"convttlstm-{dataset}"), zoo.model_info(f"convttlstm-{dataset}-m5")
    assert m3.args["cell_kwargs"]["steps"] == 3 and m5.args["cell_kwargs"]["steps"] == 5
    assert {k: v for k, v in m5.args.items() if k != "cell_kwargs"} == {k: v for k, v in m3.args.items() if k != "cell_kwargs"}
    assert dict(m5.args["cell_kwargs"], steps=3) == m3.args["cell_kwargs"]
    assert (m5.dataset, m5.input.shape) == (m3.dataset, m3.input.shape)
    assert count(zoo.create(m3.name)) == 2_687_281 and m3.reference.metrics["params_m"] == 2.69
    assert count(zoo.create(m5.name)) == 3_263_281 and not m5.reference.metrics


@pytest.mark.parametrize("cell,kw", [("convlstm", {}), ("convttlstm", dict(order=3, steps=4, ranks=3, window="fixed")),
                                     ("convttlstm", dict(order=2, steps=3, ranks=[2, 3]))])
def test_counted_macs_equal_measured_flops(cell, kw):
    """FlopCounterMode measures 2 FLOPs per multiply-add; steady state (all history filled) per step."""
    torch.manual_seed(0)
    m = VideoPredictionNet(2, cell, hidden_channels=(4, 6), layers_per_block=(1, 2), skip_stride=1, kernel_size=3,
                           cell_kwargs=kw, patch_size=2).eval()
    x = torch.rand(1, 6, 2, 8, 12)
    with torch.no_grad():
        states = [None] * len(m.layers)
        for t in range(5):  # warm-up fills the history
            m.step(m._fold(x[:, t]), states)
        with FlopCounterMode(display=False) as fc:
            m.step(m._fold(x[:, 5]), states)
    assert fc.get_total_flops() == 2 * m.macs_per_step(8, 12)


def test_zoo_create_and_summary():
    model = zoo.create("convttlstm-kth")
    assert isinstance(model, VideoPredictionNet) and model.output_sigmoid
    assert model.pretrained_cfg["architecture"] == "convttlstm-kth"
    from zoo.summary import summarize

    rows = summarize(model)
    assert rows["parameters"] == 2_687_281 and rows["table_4_2_gflops"] == 37.83
    assert rows["flops"] == 2 * model.macs_per_step(128, 128)
    small = zoo.create("convlstm-mnist", hidden_channels=(4, 4, 4, 4))
    out = small(torch.rand(1, 2, 1, 16, 16), future_frames=3)
    assert out.shape == (1, 3, 1, 16, 16)
