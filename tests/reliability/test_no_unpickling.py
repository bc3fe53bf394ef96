"""Checkpoints are read with weights_only=True: a crafted pickle never runs code, it is refused with a ZooError."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zoo.errors import WeightsError


class _WritesMarker:
    """Unpickling this object calls ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_crafted_convttlstm_checkpoint_is_refused_and_runs_nothing(tmp_path):
    from zoo_convttlstm.training import load_checkpoint

    marker = tmp_path / "code-ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"epoch": 1, "payload": _WritesMarker(marker)}, crafted)
    with pytest.raises(WeightsError, match=r"refusing to load checkpoint .*crafted\.pt.*io\.open.*could run code"):
        load_checkpoint(crafted)
    assert not marker.exists()


def test_convttlstm_checkpoint_round_trips_plain_values(tmp_path):
    import numpy as np
    from zoo_convttlstm.training import ScheduledSampling, load_checkpoint, make_optimizer, save_checkpoint

    model = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(model)
    save_checkpoint(tmp_path / "ck.pt", model=model, optimizer=opt, scheduler=sched, sampling=ScheduledSampling(),
                    epoch=np.int64(3), log=[{"val": np.float32(0.5)}])
    rest = load_checkpoint(tmp_path / "ck.pt", model=torch.nn.Linear(2, 2), sampling=ScheduledSampling())
    assert rest["epoch"] == 3 and rest["log"] == [{"val": 0.5}]
    with pytest.raises(TypeError, match=r"checkpoint value where is a \w*Path"):
        save_checkpoint(tmp_path / "bad.pt", where=tmp_path)


def test_missing_or_garbage_checkpoint_is_a_weights_error(tmp_path):
    from zoo_convttlstm.training import load_checkpoint

    with pytest.raises(WeightsError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"refusing to load checkpoint .*garbage\.pt.*Unsupported operand"):
        load_checkpoint(tmp_path / "garbage.pt")


def test_crafted_training_checkpoint_is_refused_on_resume(toy_family, tmp_path):
    import zoo
    from tests.training.conftest import RGB_REGISTRY, write_colour_folder

    toy_family(RGB_REGISTRY)
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    out.mkdir()
    torch.save({"epoch": 1, "payload": _WritesMarker(marker)}, out / "checkpoint.pt")
    with pytest.raises(WeightsError, match=r"refusing to load checkpoint .*checkpoint\.pt"):
        zoo.finetune("toynet-rgb", write_colour_folder(tmp_path / "train", 2, seed=0), epochs=1, batch_size=2,
                     progress=False, output_dir=str(out), resume=True)
    assert not marker.exists()
