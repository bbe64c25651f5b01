"""The package's import graph: no circles, and each layer imports only the layers below it.

Every `import` and `from ... import` inside `src/cache2cache` counts, wherever it is written (module
top, function body, `if TYPE_CHECKING:` block), since a circle hidden in a function still couples the
two modules. Run this file alone to check a change: `python -m pytest -q tests/test_imports.py`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cache2cache"
# Layers from the bottom; the top-level modules are the core. A module may import its own layer and
# those below; training and evaluation sit side by side and import neither each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),
    frozenset({"tasks"}),
    frozenset({"training", "evaluation"}),
    frozenset({"serving"}),
    frozenset({"demo"}),
    frozenset({"cli"}),
)


def module_names() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports (a `from X import y` names X.y when y is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(t for t in targets if t in modules and t not in (name, "cache2cache"))
    return found


def layer(name: str) -> str:
    """`core` for a top-level module, else its subpackage (`cache2cache.training.loop` -> `training`)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "core"


def rank(name: str) -> int:
    return next(i for i, group in enumerate(LAYERS) if layer(name) in group)


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items() if name != "cache2cache"}


def test_every_layer_is_known():
    assert {layer(name) for name in graph()} <= set().union(*LAYERS)


def test_no_upward_or_sideways_imports():
    wrong = [
        f"{name} ({layer(name)}) imports {target} ({layer(target)})"
        for name, targets in graph().items()
        for target in targets
        if rank(target) > rank(name) or (rank(target) == rank(name) and layer(target) != layer(name))
    ]
    assert not wrong, "\n".join(sorted(wrong))


def find_circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk meets, each as a path that starts and ends at one module."""
    circles: list[list[str]] = []
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        for target in sorted(edges.get(node, ())):
            if target in path:
                circles.append(path[path.index(target) :] + [target])
            elif target not in done:
                walk(target, [*path, target])
        done.add(node)

    for start in sorted(edges):
        if start not in done:
            walk(start, [start])
    return circles


def test_no_import_circles():
    circles = find_circles(graph())
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_the_walk_sees_a_circle_through_a_function_import(tmp_path, monkeypatch):
    """The checker itself: two modules importing each other (one inside a function) are a circle."""
    root = tmp_path / "cache2cache"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from . import b\n")
    (root / "b.py").write_text("def f():\n    from .a import g\n")
    (root / "c.py").write_text("from .b import f\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
    edges = graph()
    assert edges == {
        "cache2cache.a": {"cache2cache.b"},
        "cache2cache.b": {"cache2cache.a"},
        "cache2cache.c": {"cache2cache.b"},
    }
    assert find_circles(edges) == [["cache2cache.a", "cache2cache.b", "cache2cache.a"]]
