"""The import graph of src/mentor: no circle, and every import points down the layers.

The graph is read from the source (nothing is imported), imports inside functions
included: a lazy import hides a circle from Python at import time, not from a reader.
"""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

# Top to bottom. A module may import modules of its own layer or of any layer below; a
# name stands for that module and everything under it, except the package `mentor` itself,
# which stands for its __init__ only.
LAYERS = [
    ["mentor.__main__", "mentor.cli"],
    # the commands: each measures or serves a trained model, or trains through a recipe
    ["mentor.demo", "mentor.api", "mentor.evaluate", "mentor.predict", "mentor.export"],
    ["mentor.recipes"],
    ["mentor.teachers"],
    ["mentor.core"],
    # the corruption sweep and its figures, which a recipe and `mentor robustness` share
    ["mentor.robustness"],
    # what a run folder holds, and which of its training images a test set repeats
    ["mentor.run_folders", "mentor.overlap"],
    ["mentor.report", "mentor.console", "mentor.verdict"],
    # config sits with what it validates (model names, corruption names); data/splits
    # reads its DataConfig
    ["mentor.data", "mentor.models", "mentor.augment", "mentor.corruptions", "mentor.config",
     "mentor.inference"],
    ["mentor.runtime", "mentor.losses", "mentor.objects", "mentor.pixels"],
    ["mentor.errors", "mentor.compat", "mentor._backend", "mentor.atomic", "mentor"],
]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted((SRC / "mentor").rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, modules) -> set[str]:
    """The mentor modules `name` imports anywhere in its file. `from package import x`
    names the submodule package.x when there is one, the package otherwise."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    best, level = -1, None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            inside = module.startswith(prefix + ".") and prefix != "mentor"
            if (module == prefix or inside) and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{module} is in no layer: add it to LAYERS"
    return level


def _cycle(graph) -> list[str] | None:
    """One circle of imports as a path that ends where it starts, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read():
    graph = _graph()
    assert "mentor.core.fit" in graph["mentor.recipes.distill"]
    assert "mentor.augment" in graph["mentor.recipes.distill"]  # from mentor import augment
    assert "mentor.corruptions.blur" in graph["mentor.corruptions"]  # a submodule by name


def test_no_import_circle():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_every_import_points_down():
    up = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
          for a, targets in sorted(_graph().items()) for b in sorted(targets)
          if _layer(b) < _layer(a)]
    assert not up, "imports against the layers:\n" + "\n".join(up)
