"""The core's import layering: no import cycles in ``zoo/`` (deferred imports inside functions included), the core
never imports a family plugin, and ``zoo.conv_einsum`` needs nothing of the zoo but its errors."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import zoo

CORE = Path(zoo.__file__).parent


def module_names(root: Path, package: str) -> Dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``root`` (the folder of ``package``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package,) + path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(name: str, path: Path, modules: Set[str] = frozenset()) -> Set[str]:
    """Every module ``path`` imports, at the top or inside a function, except under ``if TYPE_CHECKING:``.

    ``from pkg import name`` imports the module ``pkg.name`` when ``modules`` has it, else ``pkg`` itself."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and getattr(node.test, "id", "") ==
               "TYPE_CHECKING" for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def import_graph(root: Path, package: str) -> Dict[str, Set[str]]:
    """Module -> the package's modules it imports."""
    modules = module_names(root, package)
    return {name: {m for m in imported(name, path, set(modules)) if m in modules and m != name}
            for name, path in modules.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_sees_a_deferred_import_cycle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    graph = import_graph(package, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.a"} and graph["pkg.c"] == set()
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_no_import_cycles_in_the_core():
    assert cycles(import_graph(CORE, "zoo")) == []


def test_the_core_never_imports_a_family_or_a_script():
    for name, path in module_names(CORE, "zoo").items():
        outside = {m for m in imported(name, path) if m.split(".")[0].startswith("zoo_") or m.startswith("scripts")}
        assert not outside, f"{name} imports {sorted(outside)}: families depend on the core, never the reverse"


def test_conv_einsum_needs_only_the_zoo_errors():
    graph = import_graph(CORE, "zoo")
    for name, deps in graph.items():
        if name.startswith("zoo.conv_einsum"):
            outside = {d for d in deps if not d.startswith("zoo.conv_einsum") and d not in ("zoo", "zoo.errors")}
            assert not outside, f"{name} imports {sorted(outside)}"
