"""Run by torchrun (or directly) in test_distributed.py: fine-tune the toy model, save this rank's weights
and the number of samples this process loaded."""

import os
import sys

import torch
from safetensors.torch import save_file

import zoo
from zoo.training.data import ImageClassificationData

data, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
loaded = {"n": 0}
original = ImageClassificationData.__getitem__


def counting_getitem(self, index):
    loaded["n"] += 1
    return original(self, index)


ImageClassificationData.__getitem__ = counting_getitem
result = zoo.finetune("toynet-rgb", data, epochs=2, lr=0.05, batch_size=8, augment=False, progress=False,
                      optimizer="sgd", scheduler="none", seed=5)
rank = os.environ.get("RANK", "single")
save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, os.path.join(out, f"{rank}.safetensors"))
with open(os.path.join(out, f"{rank}.count"), "w") as fh:
    fh.write(str(loaded["n"]))
