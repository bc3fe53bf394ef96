"""A guard over the source: no call in the project may unpickle arbitrary objects."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "zoo", ROOT / "scripts", *sorted((ROOT / "plugins").glob("*/src"))]


def _calls(pattern: str):
    """(file, line number, line) of every source line matching ``pattern``."""
    regex = re.compile(pattern)
    for folder in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if regex.search(line):
                    yield f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def test_torch_load_is_always_weights_only():
    unsafe = [hit for hit in _calls(r"torch\.load\(") if "weights_only=True" not in hit]
    assert unsafe == [], "torch.load without weights_only=True:\n" + "\n".join(unsafe)


def test_no_pickle_loads_and_no_pickled_numpy():
    hits = list(_calls(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|pickle\.loads?\(|dill\.|joblib\.load"))
    assert hits == [], "\n".join(hits)
    unsafe_np = [hit for hit in _calls(r"np\.load\(") if "allow_pickle=False" not in hit]
    assert unsafe_np == [], "np.load without allow_pickle=False:\n" + "\n".join(unsafe_np)
