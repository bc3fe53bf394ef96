"""Write the dissertation rows of ``zoo_tnn/registry.yaml`` (Tables 2.3-2.9).

The accuracies below are the only hand-typed numbers of the plugin: copied from the dissertation,
Chapter 2, Section 2.7, with the table they come from. Entries already in the file that this script
does not generate (e.g. the MNIST LeNet-5 models written by scripts/demo_tnn_mnist.py) are kept,
and so is the ``weights`` block of any generated entry.

    python plugins/zoo-tnn/tools/make_registry.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional


from zoo_tnn.naming import entry_fields

REGISTRY = Path(__file__).resolve().parents[1] / "src" / "zoo_tnn" / "registry.yaml"

# ---- ResNet-32 on CIFAR-10 (Section 2.7.1). Columns are compression rates in percent. ----
# Table 2.3: NN-C rows use E2E-KD, TNN-C rows use Seq-KD. Table 2.5: NN-C, Seq-KD and E2E-KD.
# Table 2.6: TNN-C, Seq-KD and Learn-Scratch. Table 2.4: Seq-KD for NN and TNN at 5 % and 10 %.
RESNET32: Dict[str, Dict[str, Dict[float, float]]] = {
    "svd": {"top1_e2e_kd": {5: 83.09, 10: 87.27, 20: 89.58, 40: 90.85},
            "top1_seq_kd": {5: 74.04, 10: 85.28, 20: 89.74, 40: 91.83}},
    "cp": {"top1_e2e_kd": {5: 84.02, 10: 86.93, 20: 88.75, 40: 88.75},
           "top1_seq_kd": {5: 83.19, 10: 88.50, 20: 90.72, 40: 89.75}},
    "tk": {"top1_e2e_kd": {5: 83.57, 10: 86.00, 20: 88.03, 40: 89.35},
           "top1_seq_kd": {5: 80.11, 10: 86.75, 20: 89.55, 40: 91.30}},
    "tt": {"top1_e2e_kd": {5: 77.44, 10: 82.92, 20: 84.13, 40: 86.64},
           "top1_seq_kd": {5: 80.77, 10: 87.08, 20: 89.14, 40: 91.21}},
    "mcp": {"top1_seq_kd": {2: 85.70, 5: 89.86, 10: 91.28},
            "top1_scratch": {2: 81.41, 5: 82.12, 10: 82.93}},
    "mtk": {"top1_seq_kd": {2: 61.06, 5: 71.34, 10: 81.59, 20: 87.11},
            "top1_scratch": {2: 60.65, 5: 61.46, 10: 65.75}},
    "mtt": {"top1_seq_kd": {2: 78.95, 5: 84.26, 10: 87.89},
            "top1_scratch": {2: 79.95, 5: 81.82, 10: 83.08}},
}
RESNET32_TABLES = {"svd": "2.3, 2.5", "cp": "2.3, 2.4, 2.5", "tk": "2.3, 2.4, 2.5", "tt": "2.3, 2.4, 2.5",
                   "mcp": "2.3, 2.4, 2.6", "mtk": "2.3, 2.4, 2.6", "mtt": "2.3, 2.4, 2.6"}
RESNET32_NOTES = {
    ("tk", 10): "Table 2.4 gives 86.73 for NN-TK Seq-KD at 10 %; Table 2.5 gives 86.75 (recorded).",
    ("mtk", 2): "Table 2.3 gives 61.06 (recorded); Table 2.6 gives 61.60 for the same row.",
}
# Rows the tables do not have, registered for the zoo's own students (issue 15): no dissertation number to compare.
RESNET32_UNREPORTED = {
    ("mtr", 10): "The dissertation reports no ResNet-32 TNN-mTR (mTR appears in Figure 2.6c and, for ResNet-50 on "
                 "ImageNet, in Table 2.8); this row holds the zoo's Seq-KD student, trained as the mCP and mTT ones.",
}

# ---- Wide-ResNet-28-10 on CIFAR-100, Learn-Scratch (Table 2.7). ----
WRN = {
    "tt": {0.5: 37.02, 1: 54.65, 2: 52.69, 5: 51.42},
    "cp": {0.5: 40.74, 1: 58.04, 2: 56.9, 5: 64.83},
    "mtt": {0.33: 61.67, 0.5: 65.36, 0.66: 66.82, 1: 68.83},
}

# ---- ResNet-50 on ImageNet-2012, Learn-Scratch, top-1 (Table 2.8). ----
RESNET50 = {
    "cp": {1: 57.86, 2: 64.17, 5: 69.37, 10: 71.52, 20: 72.08, 50: 72.44},
    "tt": {1: 56.82, 2: 62.23, 5: 65.54, 10: 66.21, 20: 66.90, 50: 66.92},
    "tr": {1: 56.59, 2: 62.97, 5: 69.59, 10: 71.61, 20: 73.04, 50: 73.21},
    "mcp": {0.5: 72.65, 1: 73.76, 5: 74.03, 10: 75.00, 20: 75.31, 50: 77.31},
    "mtt": {0.5: 69.27, 1: 73.04, 5: 73.51, 10: 73.50, 20: 73.87, 50: 74.14},
    "mtr": {0.5: 67.49, 1: 73.23, 5: 74.12, 10: 75.01, 20: 75.32, 50: 75.16},
}
RESNET50_TNN_RATES = [0.5, 1, 2, 5, 10, 20, 50]  # the grid; Table 2.8 has no 2 % column for TNNs

# ---- TNN-mTT with as many parameters as the original network, CIFAR-10, from scratch (Table 2.9). ----
# Test accuracy; training accuracy is 100 % for all six models.
SAME_SIZE_MTT = {"vgg16_cifar": 93.68, "wrn28_10_cifar10": 95.09, "resnet34_cifar": 91.79}

DENSE = {
    "resnet32": ("2.7.1", "2.3", {"top1": 93.2}, "original ResNet-32, 0.46 M parameters [5]"),
    "wrn28_10": ("2.7.2", "2.7", {"top1": 81.25}, "original WRN-28-10, 36.5 M parameters [14]"),
    "vgg16_cifar": ("2.7.2", "2.9", {"top1": 92.64}, "original VGG-16 on CIFAR-10, 14.7 M parameters [2]"),
    "wrn28_10_cifar10": ("2.7.2", "2.9", {"top1": 95.83}, "original WRN-28-10 on CIFAR-10, 36.5 M parameters [14]"),
    "resnet34_cifar": ("2.7.2", "2.9", {"top1": 92.49}, "original ResNet-34 on CIFAR-10, 21.3 M parameters [15]"),
}


def _pct(rate: float) -> str:
    return f"{rate:g}"


def _entry(backbone: str, dec: str, pct: float, section: str, table: Optional[str], metrics: Dict[str, float],
           note: Optional[str]) -> tuple[str, Dict[str, Any]]:
    name = f"{backbone}-{dec}-{_pct(pct)}pct"
    fields = entry_fields(backbone, dec, round(pct / 100.0, 12), _pct(pct))
    fields.pop("family")
    fields = {"family": "tnn", **fields}
    ref: Dict[str, Any] = {"section": section, **({"table": table} if table else {}), "metrics": metrics}
    if note:
        ref["note"] = note
    fields["reference"] = ref
    fields["weights"] = None
    return name, fields


def generate() -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for backbone, (section, table, metrics, note) in DENSE.items():
        dataset, spec = entry_fields(backbone, "cp", 1.0, "100")["dataset"], entry_fields(backbone, "cp", 1.0, "100")["input"]
        out[backbone] = {"family": "tnn", "builder": "backbone", "args": {"backbone": backbone},
                         "task": "classification", "dataset": dataset, "input": spec,
                         "reference": {"section": section, "table": table, "metrics": metrics, "note": note},
                         "tags": ["dense", "teacher"], "weights": None,
                         "description": f"dense {backbone} backbone (the uncompressed reference of the tables)"}
    for dec, cols in RESNET32.items():
        for pct in (2, 5, 10, 20, 40):
            metrics = {k: v[pct] for k, v in cols.items() if pct in v}
            note = RESNET32_NOTES.get((dec, pct))
            if not metrics:
                note = "not reported in the dissertation for this rate"
            name, fields = _entry("resnet32", dec, pct, "2.7.1", RESNET32_TABLES[dec], metrics, note)
            out[name] = fields
    for (dec, pct), note in RESNET32_UNREPORTED.items():
        name, fields = _entry("resnet32", dec, pct, "2.7.1", None, {}, note)
        out[name] = fields
    for dec, cols in WRN.items():
        for pct, acc in cols.items():
            name, fields = _entry("wrn28_10", dec, pct, "2.7.2", "2.7", {"top1_scratch": acc}, None)
            out[name] = fields
    for backbone, acc in SAME_SIZE_MTT.items():
        name, fields = _entry(backbone, "mtt", 100, "2.7.2", "2.9", {"top1_scratch": acc},
                              "TNN-mTT with the parameter count of the original network")
        out[name] = fields
    for dec, cols in RESNET50.items():
        rates: List[float] = RESNET50_TNN_RATES if dec.startswith("m") else sorted(cols)
        for pct in rates:
            metrics = {"top1_scratch": cols[pct]} if pct in cols else {}
            note = None if metrics else "Table 2.8 has no 2 % column for the TNN rows"
            name, fields = _entry("resnet50", dec, pct, "2.7.2", "2.8", metrics, note)
            out[name] = fields
    return out


HEADER = ("# Generated by plugins/zoo-tnn/tools/make_registry.py (dissertation rows) and\n"
          "# scripts/demo_tnn_mnist.py (MNIST models and their weights); `weights:` blocks of the CIFAR-10 models are\n"
          "# written by scripts/train.py --publish. Do not edit by hand.\n")


def keep_published_notes(generated: Dict[str, Dict[str, Any]], models: Dict[str, Any]) -> None:
    """Keep the reference note of each published entry of ``models`` (one with weights) where it extends the
    generated one: the note that says how the zoo's weights compare with the table is written after training."""
    for name, fields in generated.items():
        old = models.get(name) or {}
        note = (old.get("reference") or {}).get("note")
        new = fields["reference"].get("note")
        if old.get("weights") and note and (new is None or note.startswith(new)):
            fields["reference"]["note"] = note


def main(registry: Path = REGISTRY) -> None:
    """Add or update the dissertation's rows in the tnn fragment (zoo.publish), keeping recorded weights, the
    notes published with them, and every other entry."""
    import yaml

    from zoo.hub.files import write_text_atomic
    from zoo.publish import add_entries

    if not registry.is_file():
        write_text_atomic(registry, HEADER + "models: {}\n")
    generated = generate()
    keep_published_notes(generated, (yaml.safe_load(registry.read_text(encoding="utf-8")) or {}).get("models") or {})
    add_entries(registry, generated, keep_weights=True)
    print(f"wrote {len(generated)} generated entries to {registry}")


if __name__ == "__main__":
    main()
