"""The package's layout is the pipeline: a stage never imports a later stage, and no module
imports itself back through others (no import circle). Imports inside functions count too:
a lazy import is still a dependency.

    foundation (errors, io, console, recipe, records, methods, instructions, metrics, options) < data < models < train
    < infer, export
    < score < study < demo, cli
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"pefomed": ROOT / "pefomed", "pefomed.cli": ROOT / "cli"}

LAYERS = [
    ("foundation", ("pefomed", "pefomed.errors", "pefomed.io", "pefomed.console", "pefomed.recipe", "pefomed.records",
                    "pefomed.instructions", "pefomed.metrics", "pefomed.methods", "pefomed.options")),
    ("data", ("pefomed.data",)),
    ("models", ("pefomed.models",)),
    ("train", ("pefomed.train",)),
    ("infer/export", ("pefomed.infer", "pefomed.export")),
    ("score", ("pefomed.score",)),
    ("study", ("pefomed.study",)),
    ("entry points", ("pefomed.demo", "pefomed.cli", "pefomed.recipes")),
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            exact_only = prefix == "pefomed"  # the package itself, not everything under it
            hit = module == prefix or (not exact_only and module.startswith(prefix + "."))
            if hit and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def imports_of(module: str) -> set[str]:
    """pefomed modules imported anywhere in `module` (module level or inside functions)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("pefomed"):
                found.add(name)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_stage_imports_a_later_stage(module):
    mine = layer_of(module)
    later = sorted(f"{other} ({LAYERS[layer_of(other)][0]})" for other in GRAPH[module] if layer_of(other) > mine
                   and other != "pefomed")
    assert not later, f"{module} ({LAYERS[mine][0]}) imports a later stage: {', '.join(later)}"


def test_no_import_circle():
    # package __init__ modules are containers: "pefomed.x imports pefomed" is not a circle
    graph = {m: {o for o in deps if not MODULES[o].name == "__init__.py"} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checker_sees_a_reach_and_a_circle():
    """The rules above can fail: a later-stage import and a two-module circle are both caught."""
    assert layer_of("pefomed.train.loop") < layer_of("pefomed.infer.run")
    assert layer_of("pefomed.recipe") < layer_of("pefomed.data.collate")
    assert "pefomed.models.bundle" in GRAPH["pefomed.models.hf"]
