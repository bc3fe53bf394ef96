"""Issue 18: the layer rate and the whole-model ratio, each under its own name, and ``-all`` names whose rate is
the whole-model ratio (every convolution and linear layer tensorised, the classifier and the stem included)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.cli import grammar_hints
from zoo.errors import ZooError
from zoo_tnn.backbones import build_backbone
from zoo_tnn.layers import TensorialLinear, _Tensorial
from zoo_tnn.naming import NameGrammarError, resolve
from zoo_tnn.tensorize import InfeasibleModelRate, tensorize

D = torch.float64
RESNET50_DENSE = 25_557_032  # timm resnet50: 25.56 M parameters


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _on_meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return zoo.create(name)


def test_summary_reports_the_layer_rate_and_the_whole_model_ratio_against_the_dense_backbone() -> None:
    model = zoo.create("resnet32-mtt-5pct")
    dense = build_backbone("resnet32")
    tensorial = {n: m for n, m in model.named_modules() if isinstance(m, _Tensorial)}
    layer_params = sum(_count(m) for m in tensorial.values())
    layer_dense = sum(_count(dense.get_submodule(n)) for n in tensorial)
    rows = zoo.summarize(model, flops=False)
    assert rows["dense_backbone_parameters"] == _count(dense) == 464154
    assert rows["layer_rate"] == pytest.approx(layer_params / layer_dense, abs=1e-6)
    assert rows["layer_rate"] <= 0.05
    assert rows["whole_model_ratio"] == pytest.approx(_count(model) / _count(dense), abs=1e-6)
    assert rows["parameters_outside_tensorial_layers"] == _count(model) - layer_params
    assert rows["requested_rate"] == 0.05 and rows["requested_rate_applies_to"].startswith("tensorised layers")
    assert not {"realised_rate", "tensorial_layers_rate", "dense_equivalent_parameters"} & set(rows)


@pytest.mark.parametrize("decomposition,lowest", [("mtt", 0.0098), ("mcp", 0.0098), ("tt", 0.0098), ("tr", 0.0092),
                                                  ("mtk", 0.0077)])
def test_all_names_bring_resnet50_to_one_percent_of_the_whole_model(decomposition: str, lowest: float) -> None:
    """The name's rate alone leaves ResNet-50 at 8.6-12.8 % of dense (the classifier is 8 % of it). With -all the
    whole-model ratio is at most 1 % (the budget) and short of it by less than one rank step of the layers, which
    share one layer rate (layers of one shape change rank together): at least 0.98 % for mTT, mCP, TT; TR's rank
    steps are coarser (0.93 %), mTK's coarsest (0.77 %). What stays dense is the batch-norm scales and shifts
    (53,120 parameters, 0.21 % of the dense model)."""
    plain = _on_meta(f"resnet50-{decomposition}-1pct")
    assert 0.086 <= _count(plain) / RESNET50_DENSE <= 0.128
    model = _on_meta(f"resnet50-{decomposition}-1pct-all")
    ratio = _count(model) / RESNET50_DENSE
    assert lowest <= ratio <= 0.01
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            raise AssertionError(f"{name} is still a dense {type(mod).__name__}")
    tensorial = [n for n, m in model.named_modules() if isinstance(m, _Tensorial)]
    outside = {n: p for n, p in model.named_parameters()
               if not any(n.startswith(t + ".") for t in tensorial)}  # parameters no tensorial layer holds
    assert all(isinstance(model.get_submodule(n.rpartition(".")[0]), nn.BatchNorm2d) for n in outside)
    assert sum(p.numel() for p in outside.values()) == 53120
    rows = zoo.summarize(model, flops=False)
    assert rows["whole_model_ratio"] == pytest.approx(ratio, abs=1e-6)
    assert rows["requested_rate"] == 0.01 and rows["requested_rate_applies_to"].startswith("whole model")
    assert rows["layer_rate"] < 0.01  # the batch norms take their share of the budget
    assert rows["layers"]["conv1"].startswith(("tensorized", "rank1")) and rows["layers"]["fc"].startswith("tensorized")


def test_the_chosen_layer_rate_is_the_largest_that_fits() -> None:
    """Rebuilding with the chosen layer rate as a plain (per-layer) rate gives the same model; a hair more
    overshoots the whole-model budget."""
    dense = build_backbone("resnet32")
    budget = 0.05 * _count(dense)
    model = tensorize(copy.deepcopy(dense), "mtt", 0.05, skip_first=False, skip_classifier=False, rate_of="model")
    layer_rate = model.tnn_config["layer_rate"]
    assert model.tnn_config["rate_of"] == "model" and _count(model) <= budget
    same = tensorize(copy.deepcopy(dense), "mtt", layer_rate, skip_first=False, skip_classifier=False)
    assert _count(same) == _count(model)
    more = tensorize(copy.deepcopy(dense), "mtt", layer_rate + 1e-12, skip_first=False, skip_classifier=False)
    assert _count(more) > budget


def _hand_mtt_weight(layer: TensorialLinear) -> torch.Tensor:
    """The (T, S) matrix of a 3-mode mTT linear layer, contracted core by core (Eq. 2.3 without the spatial
    site): W[(t0 t1 t2), (s0 s1 s2)] = sum K0[s0, t0, r0] K1[r0, s1, t1, r1] K2[r1, s2, t2]."""
    k0, k1, k2 = layer.factor_list()
    (s0, t0, r0), (r0b, s1, t1, r1), (r1b, s2, t2) = k0.shape, k1.shape, k2.shape
    assert (r0, r1) == (r0b, r1b)
    assert [m.size for m in layer.network.out_modes] == [t0, t1, t2]
    assert [m.size for m in layer.network.in_modes] == [s0, s1, s2]
    w = torch.tensordot(k0, k1, dims=([2], [0]))  # s0 t0 s1 t1 r1
    w = torch.tensordot(w, k2, dims=([4], [0]))  # s0 t0 s1 t1 s2 t2
    return w.permute(1, 3, 5, 0, 2, 4).reshape(t0 * t1 * t2, s0 * s1 * s2)


def test_the_tensorised_classifier_equals_a_dense_linear_with_its_reconstructed_matrix() -> None:
    torch.manual_seed(0)
    model = zoo.create("resnet32-mtt-10pct-all").to(D)
    fc = model.get_classifier()
    assert isinstance(fc, TensorialLinear) and (fc.in_features, fc.out_features) == (64, 10)
    with torch.no_grad():
        fc.bias.normal_()
    weight = _hand_mtt_weight(fc)
    seen = {}
    fc.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0], y=out))
    x = torch.randn(3, 3, 32, 32, dtype=D)
    model.train()(x)  # a compiled conv_einsum expression
    torch.testing.assert_close(seen["y"], F.linear(seen["x"], weight, fc.bias), rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        model.eval()(x)  # inference: whichever of factorised / cached dense matrix is cheaper
    torch.testing.assert_close(seen["y"], F.linear(seen["x"], weight, fc.bias), rtol=1e-10, atol=1e-10)


def test_gradients_of_a_tiny_all_tensorised_model_match_finite_differences() -> None:
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 6)).to(D)
    model = tensorize(tiny, "mtt", 0.5, skip_first=False, skip_classifier=False, rate_of="model")
    assert [r.status for r in model.tnn_layers] == ["tensorized", "tensorized"]
    assert isinstance(model[4], TensorialLinear) and _count(model) <= 0.5 * 294
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(2, 3, 4, 4, dtype=D, requires_grad=True)

    def fn(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, dict(zip(names, params)), (x,))

    inputs = (x, *[p.detach().clone().requires_grad_() for p in model.parameters()])
    assert torch.autograd.gradcheck(fn, inputs)


def test_grammar_hint_and_entry_of_all_names() -> None:
    hints = "\n".join(grammar_hints("resnet50-*"))
    assert "{backbone}-{decomposition}-{rate}pct-all" in hints and "e.g. resnet50-mtt-1pct-all" in hints
    fields = resolve("resnet50-mtt-1pct-all")
    assert fields is not None and fields["args"] == {"backbone": "resnet50", "decomposition": "mtt", "rate": 0.01,
                                                     "skip_first": False, "skip_classifier": False, "rate_of": "model"}
    assert "whole-model-rate" in fields["tags"] and "within 1% of the dense model" in fields["description"]
    assert resolve("not_a_backbone-mtt-1pct-all") is None


@pytest.mark.parametrize("name,match", [
    ("resnet50-mtt-1pct-al", r"unknown suffix '-al'.*'resnet50-mtt-1pct-all'"),
    ("resnet18-mcp-2pct-whole", r"unknown suffix '-whole'.*\{rate\}pct\[-all\]"),
    ("resnet50-mtt-1pct-all-all", r"unknown suffix '-all-all'"),
    ("resnet50-zz-1pct-all", r"unknown decomposition 'zz'.*mtt"),
    ("resnet50-mtt-0pct-all", r"outside \(0, 100\] pct"),
])
def test_bad_suffixes_and_fields_say_what_is_expected(name: str, match: str) -> None:
    with pytest.raises(NameGrammarError, match=match):
        zoo.create(name)


def test_an_unreachable_whole_model_rate_says_the_smallest_one() -> None:
    """At 0.1 % of ResNet-50 (25,557 parameters) the batch norms alone (53,120) are over the budget."""
    with pytest.raises(InfeasibleModelRate, match=r"to 0\.1 % .* 54120 parameters are no factor's.* 0\.2488 % of the "
                                                  r"dense model at the least; ask for at least that$") as err:
        _on_meta("resnet50-mtt-0.1pct-all")  # 53,120 batch-norm parameters and the classifier's 1,000 biases
    assert isinstance(err.value, ZooError)
    with torch.device("meta"):
        resnet50 = build_backbone("resnet50")
    with pytest.raises(InfeasibleModelRate, match=r"2 conv/linear layers stay dense \(1 dense:classifier, 1 "
                                                  r"dense:first\): tensorising the first conv and the classifier "
                                                  r"\(skip_first=False, skip_classifier=False"):  # fc: 8 % of it
        tensorize(resnet50, "mtt", 0.05, rate_of="model")
    # grouped convolutions the decomposition cannot factorise are named, with no advice to tensorise them
    with pytest.raises(InfeasibleModelRate, match=r"8 conv/linear layers stay dense \(2 dense:grouped\(groups=16\), "
                                                  r".*groups=8\)\)$"):
        _on_meta("resnext26ts-mtt-5pct-all")


def test_rate_of_is_checked() -> None:
    lenet = build_backbone("lenet5")
    with pytest.raises(ValueError, match=r"rate_of must be one of \('layers', 'model'\).*'whole'"):
        tensorize(lenet, "mtt", 0.1, rate_of="whole")
    with pytest.raises(ValueError, match="needs a rate, not a rank"):
        tensorize(lenet, "mtt", rank=2, rate_of="model")
    with pytest.raises(ValueError, match="on_infeasible 'rank1' or 'raise'"):
        tensorize(lenet, "mtt", 0.1, rate_of="model", on_infeasible="dense")


def test_an_all_model_saves_and_loads_as_itself(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create("resnet32-mtt-5pct-all").eval()
    x = torch.randn(2, 3, 32, 32)
    zoo.save_pretrained(model, tmp_path / "m")
    again = zoo.create(f"local-dir:{tmp_path / 'm'}", pretrained=True).eval()
    assert isinstance(again.get_classifier(), TensorialLinear) and again.tnn_config["rate_of"] == "model"
    assert _count(again) == _count(model)
    torch.testing.assert_close(again(x), model(x))
