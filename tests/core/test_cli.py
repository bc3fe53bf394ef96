"""The command line, in-process (``zoo.cli.main``) and as ``python -m zoo``."""

from __future__ import annotations

import json
import subprocess
import sys

from zoo.cli import main


def test_list_info_families_create(toy_family, capsys):
    assert main(["list", "toynet-*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["toynet-2", "toynet-10", "toynet-small"]
    assert main(["list", "toynet-*"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["name", "family", "task", "dataset", "weights"] and "3 model(s)" in text
    assert main(["info", "toynet-small", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"]["shape"] == [2, 8, 8]
    assert main(["families", "--json"]) == 0
    assert any(r["name"] == "toy" and r["status"] == "loaded" for r in json.loads(capsys.readouterr().out))
    assert main(["create", "toynet-small", "--summary", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # conv 2->4 (3x3, 8x8 output) + linear 4->3, multiply-adds counted twice
    assert summary["parameters"] == 2 * 4 * 9 + 4 + 4 * 3 + 3
    assert summary["flops"] == 2 * (4 * 2 * 9 * 64 + 4 * 3)


def test_errors_exit_2_with_a_message(toy_family, capsys):
    assert main(["info", "toynet-smal"]) == 2
    assert "did you mean 'toynet-small'" in capsys.readouterr().err


def test_python_dash_m_zoo():
    done = subprocess.run([sys.executable, "-m", "zoo", "families", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


def test_list_shows_the_grammar_names_it_does_not_list(capsys):
    """``zoo list 'resnet18*'`` matches no registry name, but the tnn grammar builds such names: the pattern and
    an example that fits what was asked (one the grammar accepts), and timm's dense model."""
    assert main(["list", "resnet18*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "0 model(s) in the registry" in lines
    hint = lines[lines.index("family tnn also builds, on demand, names not listed here:") + 1:]
    assert hint[0].split()[:3] == ["{backbone}-{decomposition}-{rate}pct", "e.g.", "resnet18-mtt-7pct"]
    assert hint[1].split()[:3] == ["{backbone}-{decomposition}-{rate}pct-all", "e.g.", "resnet18-mtt-1pct-all"]
    assert hint[2].split()[:3] == ["{timm_model}", "e.g.", "resnet18"]
    for example in ("resnet18-mtt-7pct", "resnet18-mtt-1pct-all"):  # each example is a name the grammar accepts
        assert main(["info", example, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["family"] == "tnn"
    assert main(["list", "resnet18*", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
