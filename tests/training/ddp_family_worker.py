"""Run by torchrun in test_distributed.py: one fine-tuning epoch of a model of every family, then ``resume=True``
for a second; each rank saves its weights and the run's state for the test to compare.

Between the two runs rank 0 writes a distinctive scheduled-sampling state into the video model's checkpoint, so
the test can tell a state carried through the checkpoint from one started afresh."""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from safetensors.torch import save_file
from torch.utils.data import Subset

import zoo
from zoo import datasets
from zoo.training.datasets import build_dataset

out = Path(sys.argv[1])
torch.set_num_threads(1)
torch_dist.init_process_group("gloo")  # held here: the trainer joins it and leaves it up between the runs
rank = torch_dist.get_rank()


def image_folder(name: str, shape, classes: int, count: int = 16) -> Path:
    """``count`` random uint8 images (N, C, H, W) with labels: the same files on every rank."""
    folder = out / f"{name}-data"
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        np.savez(folder / "part0.npz", images=rng.integers(0, 256, size=(count, *shape), dtype=np.uint8),
                 labels=rng.integers(0, classes, size=count))
    torch_dist.barrier()
    return folder


def video_clips() -> Path:
    path = out / "clips.npz"
    if rank == 0:
        np.savez(path, frames=np.random.default_rng(0).integers(0, 255, size=(8, 6, 16, 16), dtype=np.uint8))
    torch_dist.barrier()
    return path


def isic_pairs(model):
    full = build_dataset(datasets.isic_dir(), model.pretrained_cfg, train=True, input_size=32)
    return Subset(full, range(8))


RUNS = {  # name: (build kwargs, data(model) -> (train, val), finetune options)
    "lenet5-mcp-5pct": ({}, lambda m: (image_folder("mnist", (1, 28, 28), 10),) * 2, {}),
    "bqn-mlp-mnist": ({}, lambda m: (image_folder("mnist", (1, 28, 28), 10),) * 2, {}),
    "sc-fac-wrn10": ({"widen_factor": 1, "kernel_size": 3}, lambda m: (image_folder("cifar", (3, 32, 32), 10),) * 2,
                     {}),
    "armaunet-isic-small": ({}, lambda m: (isic_pairs(m), None), {}),
    "convlstm-mnist-small": ({"hidden_channels": [4, 4, 4, 4]}, lambda m: (video_clips(),) * 2,
                             {"input_frames": 3, "future_frames": 3}),
}

for name, (kwargs, data, options) in RUNS.items():
    folder = out / name
    for epochs in (1, 2):
        torch.manual_seed(0)
        model = zoo.create(name, **kwargs)
        train, val = data(model)
        result = zoo.finetune(model, train, val, epochs=epochs, lr=1e-3, batch_size=4, progress=False,
                              scheduler="none", seed=3, output_dir=str(folder), resume=epochs == 2, **options)
        torch_dist.barrier()  # rank 0 has written the checkpoint
        if epochs == 1 and name.startswith("convlstm") and rank == 0:
            checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
            checkpoint["family_state"] = {"scheduled_sampling": {"ratio": 0.5, "started": True, "best": -1.0,
                                                                 "bad_epochs": 3}}
            torch.save(checkpoint, folder / "checkpoint.pt")
        torch_dist.barrier()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(folder / f"rank{rank}.safetensors"))
    schedule = model.__dict__.get("scheduled_sampling")
    report = {"epochs": len(result.history),
              "teacher_forcing_ratio": getattr(model, "teacher_forcing_ratio", None),
              "scheduled_sampling": schedule.state_dict() if schedule is not None else None}
    (folder / f"rank{rank}.json").write_text(json.dumps(report))

torch_dist.barrier()
torch_dist.destroy_process_group()
