"""Run the arma tests on one intra-op thread (restored afterwards).

On a shared 2-core machine, multi-threaded small FFTs spin-wait: 100 tiny rfft2/irfft2 round trips took 7 s
on 2 threads under load and 0.03 s on one.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
