"""One bad plugin harms no one: a broken registry fragment, a second plugin with a taken family name, a name grammar
that raises or claims every name, and SystemExit from a plugin leave the other families' models working."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import List

import pytest

import zoo
from tests.conftest import OTHER_FAMILY, OTHER_REGISTRY, install_dist
import zoo.registry
from zoo.cli import main
from zoo.errors import PluginError, UnknownModelError



def add_family(site: Path, package: str, name: str, body: str = "", registry: str = None,
               resolve: str = "None") -> None:
    """Install family ``name`` (package ``package``, builder ``toy_net``) with an optional registry fragment."""
    files = {"__init__.py": "", "family.py": OTHER_FAMILY.format(
        body=body, name=name, resolve=resolve,
        registry='Path(__file__).parent / "registry.yaml"' if registry is not None else "None")}
    if registry is not None:
        files["registry.yaml"] = registry
    install_dist(site, f"{package}-dist", package, files, f"[zoo.families]\n{name} = {package}.family:FAMILY\n")
    zoo.registry.refresh()


def messages(caught: List[warnings.WarningMessage], word: str) -> List[str]:
    return [str(w.message) for w in caught if word in str(w.message)]


@pytest.mark.parametrize("fragment, error", [
    ("models: [unclosed", "is not valid YAML"),
    (OTHER_REGISTRY.replace("dataset: noise", "dataset: noise\n    task: dancing"), "toytwo-a.task"),
    (OTHER_REGISTRY.replace("family: toytwo", "family: nosuch"), "name family 'nosuch'"),
    (OTHER_REGISTRY.replace("family: toytwo", "family: toy"), "name family 'toy'"),
])
def test_a_broken_fragment_is_isolated_with_one_warning(toy_family, fragment, error, capsys):
    add_family(toy_family.site, "toytwo", "toytwo", registry=fragment)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = zoo.list_models()
        assert zoo.create("toynet-small") is not None
        assert main(["list", "toynet-*"]) == 0
    found = messages(caught, "registry fragment")
    assert len(found) == 1 and "family 'toytwo'" in found[0] and error in found[0] and "ignored" in found[0]
    assert {"toynet-small", "toynet-10", "toynet-2"} <= set(names) and "toytwo-a" not in names
    assert "toynet-small" in capsys.readouterr().out


def test_a_name_defined_twice_keeps_the_first_with_a_warning(toy_family):
    add_family(toy_family.site, "toytwo", "toytwo",
               registry=OTHER_REGISTRY + OTHER_REGISTRY.split("models:")[1].replace("toytwo-a", "toynet-small"))
    with pytest.warns(RuntimeWarning, match=r"'toynet-small' is defined twice: in .*toyfam.*and in .*toytwo.*first"):
        names = zoo.list_models()
    assert "toytwo-a" in names and zoo.model_info("toynet-small").family == "toy"


def test_a_second_plugin_with_a_taken_family_name_does_not_shadow_the_first(toy_family, tmp_path):
    later = tmp_path / "later-site"
    later.mkdir()
    sys.path.append(str(later))
    try:
        add_family(later, "toyimpostor", "toy", registry="models: {}\n")
        with pytest.warns(RuntimeWarning, match=r"family 'toy' is provided twice: by toy-family .* and by "
                                                r"toyimpostor-dist .*using the first"):
            families = {row["name"]: row for row in zoo.list_families()}
        assert families["toy"]["distribution"] == "toy-family" and families["toy"]["models"] == 3
        assert "toynet-small" in zoo.list_models()
    finally:
        sys.path.remove(str(later))


@pytest.mark.parametrize("exception", ["RuntimeError('boom')", "SystemExit(3)"])
def test_a_name_grammar_that_raises_breaks_no_other_name(toy_family, exception):
    add_family(toy_family.site, "toyraise", "atoy", body=f"def resolve(name):\n    raise {exception}\n",
               resolve="resolve")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert zoo.model_info("toynet-w5").family == "toy"  # the toy family's grammar
        with pytest.raises(UnknownModelError, match="did you mean 'toynet-small'"):
            zoo.model_info("toynet-smal")
    found = messages(caught, "'atoy'")
    assert len(found) == 1 and "raised" in found[0] and exception.split("(")[0] in found[0]


def test_a_greedy_name_grammar_hijacks_nothing(toy_family):
    body = ('def resolve(name):\n    return dict(builder="toy_net", dataset="noise", '
            'input={"shape": [2, 8, 8], "num_classes": 3})\n')
    add_family(toy_family.site, "toygreedy", "atoy", body=body, resolve="resolve")
    with pytest.warns(RuntimeWarning, match=r"name grammar of family 'atoy' claims the made-up name"):
        assert zoo.model_info("toynet-w5").family == "toy"
    with pytest.raises(UnknownModelError, match="did you mean 'toynet-small'"):
        zoo.model_info("toynet-smal")  # a typo stays a typo


def test_two_grammars_claiming_one_name_is_an_error_naming_both(toy_family):
    body = ('def resolve(name):\n    return dict(builder="toy_net", dataset="noise", input={"shape": [2, 8, 8], '
            '"num_classes": 3}) if name == "toynet-w5" else None\n')
    add_family(toy_family.site, "toyrival", "atoy", body=body, resolve="resolve")
    with pytest.raises(PluginError, match=r"'toynet-w5' is claimed by the name grammars of families 'atoy', 'toy'"):
        zoo.create("toynet-w5")
    assert zoo.model_info("toynet-w6").family == "toy"


def test_a_grammar_cannot_resolve_names_into_another_family(toy_family):
    body = ('def resolve(name):\n    return dict(family="toy", builder="toy_net", dataset="noise", '
            'input={"shape": [2, 8, 8], "num_classes": 3}) if name == "special" else None\n')
    add_family(toy_family.site, "toyforge", "atoy", body=body, resolve="resolve")
    with pytest.warns(RuntimeWarning, match="returned an entry of family 'toy'"):
        with pytest.raises(UnknownModelError):
            zoo.model_info("special")


def test_system_exit_from_a_plugin_does_not_end_the_cli(toy_family, capsys):
    install_dist(toy_family.site, "toy-exit", "toyexit", {"__init__.py": "", "family.py": "raise SystemExit(7)\n"},
                 "[zoo.families]\ntoyexit = toyexit.family:FAMILY\n")
    add_family(toy_family.site, "toyexitbuild", "toyb", registry=OTHER_REGISTRY.replace("toytwo", "toyb"),
               body="def toy_net(**kwargs):\n    raise SystemExit(9)\n")
    with pytest.warns(RuntimeWarning, match=r"'toyexit' .*failed to import: SystemExit: 7"):
        assert main(["families"]) == 0
    assert "toyexit" in capsys.readouterr().out
    assert main(["list"]) == 0 and "toynet-small" in capsys.readouterr().out
    assert main(["create", "toyb-a"]) == 2
    assert "called exit(9) while building 'toyb-a'" in capsys.readouterr().err


def test_zoo_families_shows_the_ignored_fragment(toy_family, capsys):
    add_family(toy_family.site, "toytwo", "toytwo", registry="models: [unclosed")
    with pytest.warns(RuntimeWarning, match="registry fragment of family 'toytwo'"):
        rows = {row["name"]: row for row in zoo.list_families()}
    assert rows["toytwo"]["status"] == "registry error" and rows["toytwo"]["models"] == 0
    error = rows["toytwo"]["error"]
    assert error.startswith("registry fragment ignored: ") and "not valid YAML" in error
    assert rows["toy"]["status"] == "loaded" and rows["toy"]["error"] is None and rows["toy"]["models"] == 3


@pytest.mark.parametrize("body, kind", [
    ("def toy_net(**kwargs):\n    return {}['width']\n", "KeyError: 'width'"),
    ("def toy_net(**kwargs):\n    raise RuntimeError('cuda kernel missing')\n", "RuntimeError: cuda kernel missing"),
    ("def toy_net(**kwargs):\n    return len(5)\n", "TypeError: object of type 'int' has no len()"),
])
def test_a_builder_that_crashes_is_the_plugins_error_and_other_families_still_build(toy_family, capsys, body, kind):
    add_family(toy_family.site, "toycrash", "toyb", registry=OTHER_REGISTRY.replace("toytwo", "toyb"), body=body)
    with pytest.raises(PluginError, match=rf"builder 'toy_net' of family 'toyb' failed while building 'toyb-a': "
                                          rf"{re.escape(kind)} \(a bug in the family's plugin") as info:
        zoo.create("toyb-a")
    assert info.value.__cause__ is not None  # the original traceback stays reachable
    assert main(["create", "toyb-a"]) == 2 and "failed while building 'toyb-a'" in capsys.readouterr().err
    assert zoo.create("toynet-small") is not None
