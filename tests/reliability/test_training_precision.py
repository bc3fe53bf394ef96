"""The trainer honours --precision and --channels-last: asserted on what the training step actually ran with (the
dtype of its output under autocast, the memory format of the convolution weights), not on the options."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.training.conftest import colour_data, rgb_toy  # noqa: F401  (fixtures)
from zoo.training import steps


@pytest.fixture
def observed():
    """Replace the classification step by one recording the logits' dtype and the stem weight's layout."""
    original, seen = steps.DEFAULT_STEPS["classification"], []

    def recording_step(model, batch, entry):
        logits = model(batch[0])
        seen.append((logits.dtype, model.stem.weight.is_contiguous(memory_format=torch.channels_last)))
        return torch.nn.functional.cross_entropy(logits.float(), batch[1])

    steps.DEFAULT_STEPS["classification"] = recording_step
    yield seen
    steps.DEFAULT_STEPS["classification"] = original


@pytest.mark.parametrize("options, dtype, channels_last", [
    (dict(precision="bf16", channels_last=True), torch.bfloat16, True),
    (dict(precision="fp32", channels_last=False), torch.float32, False),
    (dict(), torch.float32, False),  # on a CPU, "auto" is fp32 and channels-last is off
])
def test_the_step_runs_with_the_requested_precision_and_layout(rgb_toy, colour_data, observed, options, dtype,
                                                               channels_last):
    zoo.finetune(rgb_toy, colour_data[0], epochs=1, batch_size=16, progress=False, device="cpu", **options)
    assert observed and set(observed) == {(dtype, channels_last)}
