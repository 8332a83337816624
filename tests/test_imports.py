"""The package's import graph: which package may import which (STYLE.md: imports go one way,
shared pieces live in core and data), no cycles, and `import rlhf` stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# package -> the packages it may import. `config` is the loader every stage config uses; core holds
# what two stages share; data the record formats; inputs (rlhf/inputs.py) the check of every input
# file a stage reads, before its first step. The stages and tools stand side by side on top of
# them and never import each other (one exception: eval hands tasks to the labeling app for human
# evaluation): what one needs of another moves down to core or data. demo (the embedded world's
# end-to-end run) orchestrates every stage; world (the simulation) is data-level.
BASE = {"config", "core", "data", "inputs"}
ALLOWED = {
    "config": set(),
    "core": {"config"},
    "data": {"config", "core"},
    "inputs": {"config", "core", "data"},
    **{stage: BASE for stage in ("sft", "rm", "ppo", "label", "serve", "world")},
    "eval": BASE | {"label"},  # human evaluation: eval/human.py writes blinded tasks into the labeling app's database
    "demo": BASE | {"sft", "rm", "ppo", "eval", "world"},
    "cli": {"config", "data"},  # stages are loaded by name (cli.STAGES), not imported; data for RecordError
    "rlhf": {"core"},  # rlhf/__init__.py: the lazy public loaders
    "__main__": {"cli"},
}
# Step 3 of issue 17 removed the last one (label app <-> admin); none may be added.
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every rlhf module this file imports, at the top or inside a function (a lazy import is still a
    dependency). `from rlhf.x import y` counts rlhf.x.y when y is a module, else rlhf.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rlhf"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rlhf":
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rlhf"


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (SRC / "rlhf").rglob("*.py")}
    return {m: imported_modules(p, set(files)) - {m} for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_allowed_package_edges_form_no_cycle():
    assert not cycles({p: set(deps) for p, deps in ALLOWED.items()})


def test_every_import_follows_an_allowed_package_edge():
    wrong = sorted(f"{m} imports {dep}" for m, deps in import_graph().items() for dep in deps
                   if package_of(dep) != package_of(m) and package_of(dep) not in ALLOWED[package_of(m)])
    assert not wrong, "\n".join(wrong)


def test_no_module_import_cycles_beyond_the_known_ones():
    new = [c for c in cycles(import_graph()) if not any(c <= known for known in KNOWN_CYCLES)]
    assert not new, new


def test_the_edge_checker_sees_a_lazy_cross_stage_import(tmp_path):
    """The checker itself: a function-level `from rlhf.sft.train import x` in a ppo module is found."""
    f = tmp_path / "mod.py"
    f.write_text("def f():\n    from rlhf.sft.train import save_final\n    import rlhf.core.ops\n")
    found = imported_modules(f, {"rlhf.sft.train", "rlhf.core.ops"})
    assert found == {"rlhf.sft.train", "rlhf.core.ops"}
    assert package_of("rlhf.sft.train") not in ALLOWED["ppo"]


def test_import_rlhf_does_not_import_torch():
    """`rlhf/__init__.py` promises a light import (the CLI's --help and the labeling app rely on it)."""
    code = "import sys, rlhf, rlhf.cli, rlhf.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
