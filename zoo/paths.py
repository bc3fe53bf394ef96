"""Well-known locations: the repository's shared data folder and the zoo cache."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """Folder of the small real data sets (``$ZOO_SHARED_DATA``, else ``<repo>/../shared/data``)."""
    env = os.environ.get("ZOO_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def cache_dir() -> Path:
    """Folder for files the zoo owns (``$ZOO_CACHE``, else ``~/.cache/zoo``)."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo"))
