"""The labeling app's modules import one way (admin and app no longer import each
other), and app.py only wires: it defines no route."""

from __future__ import annotations

import ast
from pathlib import Path

import rlhf.label

PACKAGE = Path(rlhf.label.__file__).parent


def label_imports(path: Path) -> set[str]:
    """The rlhf.label modules a file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "rlhf.label":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("rlhf.label."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("rlhf.label."))
    return found


def test_label_modules_form_no_import_cycle():
    graph = {p.stem: label_imports(p) - {p.stem} for p in PACKAGE.glob("*.py")}
    order, done = [], set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module in done:
            return
        for dependency in sorted(graph.get(module, ())):
            visit(dependency, path + (module,))
        done.add(module)
        order.append(module)

    for module in sorted(graph):
        visit(module, ())
    assert [m for m, deps in graph.items() if "app" in deps] == ["cli"]  # only `serve` imports the wiring
    assert order.index("pages") < order.index("admin") and order.index("pages") < order.index("labeler")


def test_app_defines_no_route():
    tree = ast.parse((PACKAGE / "app.py").read_text(encoding="utf-8"))
    decorated = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.decorator_list]
    assert decorated == []
