"""Generated documentation stays in step with the registry (regenerate with scripts/model_table.py)."""

from __future__ import annotations

import re
from pathlib import Path

import zoo

ROOT = Path(__file__).resolve().parents[2]


def test_model_tables_list_exactly_the_registry():
    listed = re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs" / "models.md").read_text(), flags=re.M)
    assert listed == zoo.list_models(), "run: python scripts/model_table.py"
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- model-table:start -->")[1].split("<!-- model-table:end -->")[0]
    assert re.findall(r"^\| `([^`]+)` \|", section, flags=re.M) == zoo.list_models(pretrained=True)
