"""Registry parsing and validation: every error names the entry and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.errors import RegistryError
from zoo.registry.loader import merge, parse_file
from zoo.registry.resolve import filter_names, natural_key

GOOD = """
models:
  m-1:
    family: toy
    builder: toy_net
    dataset: noise
    input: {shape: [2, 8, 8], num_classes: 3}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parses_a_valid_file(tmp_path):
    [entry] = parse_file(write(tmp_path, GOOD))
    assert entry.name == "m-1" and entry.input.shape == [2, 8, 8] and entry.task == "classification"
    assert entry.source.endswith("r.yaml")


@pytest.mark.parametrize("field, value, expected", [
    ("input: {shape: [2, 8, 8], num_classes: 3}", "input: {shape: [2, 8, 8], num_classes: three}",
     "m-1.input.num_classes"),
    ("dataset: noise", "dataset: noise\n    colour: red", "m-1.colour"),
    ("dataset: noise", "dataset: noise\n    weights: {hf_hub_id: a/b, sha256: 'abc'}", "m-1.weights.sha256"),
    ("dataset: noise", "dataset: noise\n    weights: {hf_hub_id: a/b, sha256: '" + "0" * 64 +
     "', filename: model.bin}", "m-1.weights.filename"),
    ("dataset: noise", "dataset: noise\n    task: dancing", "m-1.task"),
    ("input: {shape: [2, 8, 8], num_classes: 3}", "input: {shape: [2, 8, 8], mean: [0.5]}", "m-1.input"),
    ("    builder: toy_net\n", "", "m-1.builder"),
])
def test_bad_entries_name_entry_and_field(tmp_path, field, value, expected):
    text = GOOD.replace(field, value)
    assert text != GOOD
    with pytest.raises(RegistryError, match=expected.replace(".", r"\.")):
        parse_file(write(tmp_path, text))


def test_malformed_sha_message_says_what_was_given(tmp_path):
    text = GOOD.replace("dataset: noise", "dataset: noise\n    weights: {hf_hub_id: a/b, sha256: 'XYZ'}")
    with pytest.raises(RegistryError, match="64 lowercase hex digits, got 'XYZ'"):
        parse_file(write(tmp_path, text))


def test_file_level_errors(tmp_path):
    with pytest.raises(RegistryError, match="not valid YAML"):
        parse_file(write(tmp_path, "models: [unclosed"))
    with pytest.raises(RegistryError, match="exactly one top-level key 'models'"):
        parse_file(write(tmp_path, "entries: {}"))
    with pytest.raises(RegistryError, match="must be a mapping"):
        parse_file(write(tmp_path, "models:\n  m-1: 3\n"))
    with pytest.raises(RegistryError, match="does not exist"):
        parse_file(tmp_path / "missing.yaml")


def test_duplicate_names_across_files_name_both_sources(tmp_path):
    a, b = write(tmp_path, GOOD, "a.yaml"), write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(RegistryError, match=r"'m-1' is defined twice: in .*a\.yaml and in .*b\.yaml"):
        merge([(a, parse_file(a)), (b, parse_file(b))], families=["toy"])


def test_unknown_family_lists_installed_ones(tmp_path):
    a = write(tmp_path, GOOD)
    with pytest.raises(RegistryError, match=r"names 'toy', which is not installed \(installed families: alpha, beta\)"):
        merge([(a, parse_file(a))], families=["beta", "alpha"])


def test_natural_sort_and_wildcards():
    names = ["resnet50-mtt-10pct", "resnet50-mtt-2pct", "resnet50-mtt-0.5pct", "resnet32-cp-5pct", "lenet5"]
    assert filter_names(names, "resnet50-*") == ["resnet50-mtt-0.5pct", "resnet50-mtt-2pct", "resnet50-mtt-10pct"]
    assert filter_names(names, ["lenet*", "resnet32-*"]) == ["lenet5", "resnet32-cp-5pct"]
    assert filter_names(names, "*", exclude="resnet50-*") == ["lenet5", "resnet32-cp-5pct"]
    assert sorted(["a10", "a9", "b1", "a"], key=natural_key) == ["a", "a9", "a10", "b1"]


def test_core_registry_is_valid():
    from zoo.registry.loader import CORE_REGISTRY

    parse_file(CORE_REGISTRY)
