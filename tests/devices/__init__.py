"""Tests that run on every device this machine has."""

import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
"""The CPU always, CUDA when present: parametrize device-dependent tests over this, never skip."""
