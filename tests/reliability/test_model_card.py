"""The model card written by save_pretrained: values from registry entries and from the caller (tags, metric names,
descriptions) cannot add front-matter keys or break the metrics table."""

from __future__ import annotations

import yaml

from zoo.hub.pretrained import model_card

CONFIG = {"name": "toynet-small", "family": "toy", "builder": "toy_net", "task": "classification",
          "dataset": "noise", "tags": ["toy", "x\nlicense: evil", "---"],
          "description": "---\nlicense: evil\n---", "metrics": {"top|1": 0.5, "two\nlines": 0.25}}


def test_tags_cannot_add_front_matter_keys():
    card = model_card(CONFIG)
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("\n---\n", 1)[0][4:])
    assert set(front) == {"library_name", "license", "tags", "datasets", "pipeline_tag", "metrics", "model-index"}
    assert front["license"] == "mit" and front["library_name"] == "spectral-zoo"
    assert front["tags"] == ["spectral-zoo", "toy", "toy", "x\nlicense: evil", "---"]
    assert [m["name"] for m in front["model-index"][0]["results"][0]["metrics"]] == ["top|1", "two\nlines"]


def test_metric_names_stay_in_their_table_cell():
    rows = [line for line in model_card(CONFIG).splitlines() if line.startswith("| ")]
    assert rows[1:] == ["| top\\|1 | 0.5 | — |", "| two lines | 0.25 | — |"]
