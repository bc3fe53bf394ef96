"""Two gloo processes under torchrun hold identical weights that match one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_gloo_ranks_match_single_process(rgb_toy, colour_data, tmp_path):
    train, _ = colour_data  # 48 images: 6 global batches of 8, 4 per rank
    site = Path(sys.path[0])  # the toy family's site folder, put first on sys.path by the fixture
    path = [str(site), str(WORKER.parents[2])] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path),
           "OMP_NUM_THREADS": "1"}
    run = lambda *cmd: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)  # noqa: E731
    single = run(sys.executable, str(WORKER), str(train), str(tmp_path))
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              str(WORKER), str(train), str(tmp_path))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    counts = [int((tmp_path / f"{r}.count").read_text()) for r in ("single", "0", "1")]
    assert counts == [96, 48, 48]  # 2 epochs of 48 images, split between the ranks
    ranks = [load_file(str(tmp_path / f"{r}.safetensors")) for r in ("0", "1")]
    reference = load_file(str(tmp_path / "single.safetensors"))
    for key, value in reference.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6)


FAMILY_WORKER = Path(__file__).with_name("ddp_family_worker.py")
FAMILY_MODELS = ("lenet5-mcp-5pct", "bqn-mlp-mnist", "sc-fac-wrn10", "armaunet-isic-small", "convlstm-mnist-small")


def test_every_family_trains_and_resumes_under_two_gloo_ranks(shared_data, tmp_path):
    """One epoch, then ``resume=True`` for a second, under torchrun with 2 gloo ranks, for a model of each family:
    the ranks end with identical weights (the gradients were averaged: each rank saw other samples), the family's
    hooks saw the model itself (BQN's step reads ``model.prior_weight``), and Conv-TT-LSTM's scheduled sampling
    continued from the state in the checkpoint on both ranks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(WORKER.parents[2])] + ([os.environ["PYTHONPATH"]]
                                                                      if os.environ.get("PYTHONPATH") else []))}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(FAMILY_WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    for name in FAMILY_MODELS:
        folder = tmp_path / name
        ranks = [load_file(str(folder / f"rank{r}.safetensors")) for r in (0, 1)]
        assert ranks[0].keys() == ranks[1].keys() and ranks[0], name
        for key in ranks[0]:
            assert torch.equal(ranks[0][key], ranks[1][key]), (name, key)
        checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
        assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2, name
        reports = [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert reports[0] == reports[1] and reports[0]["epochs"] == 2, name
    video = json.loads((tmp_path / "convlstm-mnist-small" / "rank0.json").read_text())
    # resumed from ratio 0.5 (started), one more epoch: 0.5 - 0.1; a fresh schedule would still be at 1.0
    assert video["teacher_forcing_ratio"] == pytest.approx(0.4)
    assert video["scheduled_sampling"]["started"] is True and video["scheduled_sampling"]["best"] == -1.0
    assert video["scheduled_sampling"]["bad_epochs"] == 4
