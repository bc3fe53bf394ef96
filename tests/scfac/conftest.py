"""Fixtures shared by the SC-Fac tests."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture
def f64() -> Iterator[None]:
    """float64 as the default dtype for one test (exact orthogonality checks), restored afterwards."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)
