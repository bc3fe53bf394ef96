"""Table 6.2's U-Net sizes, layer by layer (issue 18).

Three independent counts of the ISIC U-Net (widths 64-1024) agree:

* the zoo's ``UNet``, counted from its parameters stage by stage;
* a closed form per stage: a 3x3 convolution ``9 cin cout + cout`` (``+ 4 cout`` AR parameters for an ARMA layer,
  Q = 1), a batch norm ``2 cout``, the 1x1 head ``64 + 1``;
* ``OFFICIAL``: the counts of ``U_Net(in_channels=3, out_channels=1, factor=1, arma=A, arma2=A)`` of
  umd-huang-lab/ARMA-Networks (commit f86e27e, ``code/semantic_segmentation/utils/networks.py``), built as its
  ``solver.py`` builds it for ISIC (``dataset_factor['ISIC'] = 1``, ``arma2 = arma`` on ISIC), counted by
  ``sum(p.numel())`` per top-level module. They were measured once by instantiating that class (it needs only
  ``torch.nn`` to build) and are typed here, so the test does not depend on the official repository.

Totals: 34,527,041 (U-Net) and 34,554,433 (ARMA U-Net). Table 6.2 prints 3.453M and 3.455M: both are these
counts divided by 10^7, to the printed digits, and no other width of the official class comes near
(``factor`` 3: 3,819,418; 4: 2,162,129; ``OFFICIAL_FACTORS``). The official repository has no non-local U-Net (its networks.py
defines U_Net, R2U_Net, AttU_Net and R2AttU_Net), so the zoo's non-local layout and its 37,155,393 parameters
are a reconstruction that no source confirms; the test pins the count and the registry says so.

Run ``python tests/arma/test_unet_sizes.py`` for the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
import yaml
from torch import nn

from zoo_arma.unet import UNet

REGISTRY = Path(__file__).resolve().parents[2] / "plugins" / "zoo-arma" / "src" / "zoo_arma" / "registry.yaml"

# (official module, zoo module): the official U_Net's attribute names and the zoo's, in forward order.
STAGES: List[Tuple[str, str]] = [
    ("Conv1", "encoder.0"), ("Conv2", "encoder.1"), ("Conv3", "encoder.2"), ("Conv4", "encoder.3"),
    ("Conv5", "encoder.4"),
    ("Up5", "ups.0"), ("Up_conv5", "decoder.0"), ("Up4", "ups.1"), ("Up_conv4", "decoder.1"),
    ("Up3", "ups.2"), ("Up_conv3", "decoder.2"), ("Up2", "ups.3"), ("Up_conv2", "decoder.3"),
    ("Conv_1x1", "head"),
]

OFFICIAL: Dict[bool, Dict[str, int]] = {  # measured from the official class; see the module docstring
    False: {"Conv1": 38_976, "Conv2": 221_952, "Conv3": 886_272, "Conv4": 3_542_016, "Conv5": 14_161_920,
            "Up5": 4_720_128, "Up_conv5": 7_080_960, "Up4": 1_180_416, "Up_conv4": 1_771_008, "Up3": 295_296,
            "Up_conv3": 443_136, "Up2": 73_920, "Up_conv2": 110_976, "Conv_1x1": 65},
    True: {"Conv1": 39_488, "Conv2": 222_976, "Conv3": 888_320, "Conv4": 3_546_112, "Conv5": 14_170_112,
           "Up5": 4_722_176, "Up_conv5": 7_085_056, "Up4": 1_181_440, "Up_conv4": 1_773_056, "Up3": 295_808,
           "Up_conv3": 444_160, "Up2": 74_176, "Up_conv2": 111_488, "Conv_1x1": 65},
}
OFFICIAL_FACTORS = {  # (factor, arma): the official U_Net's total at the other widths its constructor offers, measured
    (1, False): 34_527_041, (1, True): 34_554_433, (2, False): 8_637_345, (2, True): 8_651_041,
    (3, False): 3_819_418, (3, True): 3_828_506, (4, False): 2_162_129, (4, True): 2_168_977,
}
PRINTED_M = {False: 3.453, True: 3.455}  # Table 6.2, "params." column, in M
NONLOCAL_PRINTED_M = {False: 4.403, True: 4.405}


def _conv3(cin: int, cout: int, arma: bool) -> int:
    """A 3x3 convolution with bias, plus 4 AR parameters per output channel for an ARMA layer (Q = 1)."""
    return 9 * cin * cout + cout + (4 * cout if arma else 0)


def closed_form(width: int, arma: bool) -> Dict[str, int]:
    """Per-stage parameter counts of the U-Net of 6.5.3 / Fig. 6.14a, keyed by the zoo's module names."""
    ch = [width * m for m in (1, 2, 4, 8, 16)]
    bn = 2  # weight and bias per channel

    def double(cin: int, cout: int) -> int:
        return _conv3(cin, cout, arma) + bn * cout + _conv3(cout, cout, arma) + bn * cout

    counts = {"encoder.0": double(3, ch[0])}
    counts.update({f"encoder.{i}": double(ch[i - 1], ch[i]) for i in range(1, 5)})
    for k, i in enumerate(range(4, 0, -1)):
        counts[f"ups.{k}"] = _conv3(ch[i], ch[i - 1], arma) + bn * ch[i - 1]
        counts[f"decoder.{k}"] = double(2 * ch[i - 1], ch[i - 1])
    counts["head"] = ch[0] + 1
    return counts


def zoo_counts(model: nn.Module) -> Dict[str, int]:
    """Parameters per stage of a zoo ``UNet`` (``encoder.i``, ``ups.i``, ``decoder.i``, ``head``, ``nl_*``)."""
    counts: Dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] in ("encoder", "ups", "decoder") else parts[0]
        counts[key] = counts.get(key, 0) + p.numel()
    return counts


def _build(**kwargs) -> nn.Module:
    with torch.device("meta"):  # counts only, no memory or init time
        return UNet(width=64, **kwargs)


@pytest.mark.parametrize("arma", [False, True])
def test_every_stage_matches_the_official_unet_and_the_closed_form(arma):
    ours = zoo_counts(_build(arma=arma))
    expected = closed_form(64, arma)
    assert ours == expected
    assert {zoo: OFFICIAL[arma][off] for off, zoo in STAGES} == expected
    assert sum(ours.values()) == (34_554_433 if arma else 34_527_041)


def official_count(factor: int, arma: bool) -> int:
    """The official ``U_Net(3, 1, factor, arma, arma2=arma)`` count in closed form: its widths are ``64 // factor``
    ... ``1024 // factor`` (floor division, so for factor 3 they are 21, 42, 85, 170, 341, not multiples of 21)."""
    c1, c2, c3, c4, c5 = (w // factor for w in (64, 128, 256, 512, 1024))

    def double(cin: int, cout: int) -> int:
        return _conv3(cin, cout, arma) + 2 * cout + _conv3(cout, cout, arma) + 2 * cout

    def up(cin: int, cout: int) -> int:
        return _conv3(cin, cout, arma) + 2 * cout

    enc = double(3, c1) + double(c1, c2) + double(c2, c3) + double(c3, c4) + double(c4, c5)
    # the decoder blocks take 1024 // factor ... 128 // factor inputs, as the constructor declares them (for
    # factor 3 that is 341 and 85, one more than the concatenations they receive: such a model would not run)
    dec = up(c5, c4) + double(c5, c4) + up(c4, c3) + double(c4, c3) + up(c3, c2) + double(c3, c2) + up(c2, c1) + double(c2, c1)
    return enc + dec + c1 + 1


@pytest.mark.parametrize("arma", [False, True])
def test_table_6_2_prints_the_count_divided_by_ten_million(arma):
    total = official_count(1, arma)
    assert total == sum(closed_form(64, arma).values())
    assert round(total / 1e7, 3) == PRINTED_M[arma]
    for (factor, with_arma), measured in OFFICIAL_FACTORS.items():
        assert official_count(factor, with_arma) == measured
    # no other width of the official class gives the printed count
    for factor in range(2, 17):
        assert abs(official_count(factor, arma) / 1e6 - PRINTED_M[arma]) > 0.3, factor


@pytest.mark.parametrize("arma", [False, True])
def test_nonlocal_unet_count_is_ours_and_matches_no_reading_of_the_table(arma):
    model = _build(arma=arma, nonlocal_blocks=True)
    ours = zoo_counts(model)
    base = closed_form(64, arma)
    assert {k: v for k, v in ours.items() if not k.startswith("nl_")} == base
    # embedded Gaussian block on C channels: theta, phi, g (C -> C/2), W (C/2 -> C) with bias, BN on W's output
    block = {c: 3 * (c * c // 2 + c // 2) + (c // 2 * c + c) + 2 * c for c in (1024, 512)}
    assert ours["nl_bottleneck"] == block[1024] and ours["nl_decoder"] == block[512]
    total = sum(ours.values())
    assert total == (37_182_785 if arma else 37_155_393)
    for scale in (1e6, 1e7):
        assert abs(total / scale - NONLOCAL_PRINTED_M[arma]) > 0.5


def test_registry_notes_give_the_evidence_and_mark_the_reconstruction():
    models = yaml.safe_load(REGISTRY.read_text())["models"]
    for name in ("unet-isic", "armaunet-isic"):
        note = models[name]["reference"]["note"]
        assert "umd-huang-lab/ARMA-Networks" in note and "layer for layer" in note, name
    for name in ("nl-unet-isic", "nl-armaunet-isic"):
        note = models[name]["reference"]["note"]
        assert "reconstruction" in note and "no non-local U-Net" in note, name
        assert "reconstruction" in models[name]["tags"], name


def _table() -> str:
    """The per-stage table: official name, zoo name, official / zoo / closed-form counts, plain and ARMA."""
    rows = [f"{'official':<10} {'zoo':<13} {'U-Net':>11} {'ARMA U-Net':>11}"]
    counts = {arma: zoo_counts(_build(arma=arma)) for arma in (False, True)}
    for off, ours in STAGES:
        for arma in (False, True):
            assert counts[arma][ours] == OFFICIAL[arma][off] == closed_form(64, arma)[ours]
        rows.append(f"{off:<10} {ours:<13} {counts[False][ours]:>11,} {counts[True][ours]:>11,}")
    rows.append(f"{'total':<24} {sum(counts[False].values()):>11,} {sum(counts[True].values()):>11,}")
    nl = {arma: zoo_counts(_build(arma=arma, nonlocal_blocks=True)) for arma in (False, True)}
    for key in ("nl_bottleneck", "nl_decoder"):
        rows.append(f"{'-':<10} {key:<13} {nl[False][key]:>11,} {nl[True][key]:>11,}  (reconstruction)")
    rows.append(f"{'NL total':<24} {sum(nl[False].values()):>11,} {sum(nl[True].values()):>11,}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_table())
