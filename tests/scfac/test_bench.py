"""scripts/bench_scfac.py helpers: the Gram-eigenvalue orthogonality error against SVD, and partial reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from zoo_scfac.layers import OrthoConv2d

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_scfac.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scfac", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_max_sigma_error_matches_singular_values():
    bench = _bench()
    torch.manual_seed(0)
    for shape in ((3, 4, 6, 6), (5, 7, 3), (2, 3, 8)):
        mats = torch.randn(*shape, dtype=torch.complex128)
        ref = float((torch.linalg.svdvals(mats) - 1).abs().max())
        assert abs(bench.max_sigma_error(mats) - ref) < 1e-12
    layer = OrthoConv2d(6, 6, 3, init="uniform").double()  # exactly orthogonal: the error is at rounding level
    with torch.no_grad():
        spectrum = torch.fft.fft2(layer.build_kernel(), s=(8, 8)).permute(2, 3, 0, 1)
    assert bench.max_sigma_error(spectrum) < 1e-6  # geotorch's float32 base bounds it (not 1e-12)
    assert bench.max_sigma_error(1.5 * spectrum) > 0.49


def test_report_is_written_from_partial_results(tmp_path):
    bench = _bench()
    meta = {"command": "c", "device": "cpu", "threads": 1, "batch": 8, "torch": "t", "load_average": [1.0, 1.0, 1.0]}
    results = {"layer": {"scfac@1": {"error": "boom"}},
               "network": {"scfac@1": {"train_step_s": 2.0, "train_step_cpu_s": 1.0, "eval_s": 0.1, "peak_extra_mb": 10.0},
                           "rko@1": {"train_step_s": 3.0, "train_step_cpu_s": 2.0, "eval_s": 0.1, "memory_error": "x"}}}
    bench.write_report(tmp_path / "out", meta, results)
    assert json.loads((tmp_path / "out.json").read_text())["network"]["rko@1"]["memory_error"] == "x"
    md = (tmp_path / "out.md").read_text()
    assert "| 1 | scfac | error: boom |" in md
    assert "| 1 | rko | 3.000 | 2.000 | 2.00 | - | - | 0.100 |" in md  # ratio of CPU seconds against SC-Fac
