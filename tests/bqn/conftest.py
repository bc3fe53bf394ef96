"""BQN tests run single-threaded: their tensors are tiny, and thread hand-offs dominate on a busy machine."""

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
