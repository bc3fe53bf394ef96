"""plugins/zoo-tnn/tools/make_registry.py: the shipped fragment is what its generator writes, and regenerating keeps
the weights and the notes published with them."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

TOOL = Path(__file__).resolve().parents[2] / "plugins" / "zoo-tnn" / "tools" / "make_registry.py"


@pytest.fixture(scope="module")
def make_registry():
    spec = importlib.util.spec_from_file_location("make_registry", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_the_shipped_fragment_leaves_it_byte_for_byte(make_registry, tmp_path):
    copy = tmp_path / "registry.yaml"
    shutil.copyfile(make_registry.REGISTRY, copy)
    make_registry.main(copy)
    assert copy.read_text(encoding="utf-8") == make_registry.REGISTRY.read_text(encoding="utf-8")


def test_every_issue_15_student_has_a_registry_row(make_registry):
    models = yaml.safe_load(make_registry.REGISTRY.read_text(encoding="utf-8"))["models"]
    students = [f"resnet32-{d}-10pct" for d in ("cp", "tk", "tt", "mcp", "mtt", "mtr")] + \
        ["resnet32-mcp-5pct", "resnet32-mtt-5pct"]
    assert [s for s in students if s not in models] == []
    assert models["resnet32-mtr-10pct"]["reference"]["metrics"] == {}  # no dissertation number to compare with


def _generated(note):
    return {"m": {"reference": {"section": "2.7.1", "metrics": {}, **({"note": note} if note else {})}}}


@pytest.mark.parametrize("published, old, new, kept", [
    (True, "Table note. The zoo's weights reach 80 %.", "Table note.", "Table note. The zoo's weights reach 80 %."),
    (True, "The zoo's weights reach 80 %.", None, "The zoo's weights reach 80 %."),
    (True, "An old table note.", "A corrected table note.", "A corrected table note."),  # not an extension
    (False, "Table note. Hand-written.", "Table note.", "Table note."),  # no weights: nothing was published
])
def test_a_published_note_is_kept_only_where_it_extends_the_generated_one(make_registry, published, old, new, kept):
    generated = _generated(new)
    models = {"m": {"reference": {"note": old}, "weights": {"sha256": "0" * 64} if published else None}}
    make_registry.keep_published_notes(generated, models)
    assert generated["m"]["reference"].get("note") == kept
