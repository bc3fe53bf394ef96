"""Two gloo processes under torchrun hold identical weights that match one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
