"""Where the zoo keeps and finds files: its cache and the data sets recipes name."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Folder for files the zoo owns (``$ZOO_CACHE``, else ``~/.cache/zoo``)."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo"))


def data_dir() -> Path:
    """Folder of the data sets that recipes and :mod:`zoo.datasets` name by relative path (``mnist``,
    ``cifar10_train``, ...): ``$ZOO_DATA``, else ``<cache>/data``."""
    env = os.environ.get("ZOO_DATA")
    return Path(env) if env else cache_dir() / "data"
