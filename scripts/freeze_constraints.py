"""Write constraints.txt: the installed version of every package `pip install -e .[all,test,eval]` pulls in.

    .venv/bin/python scripts/freeze_constraints.py      # after upgrading a package and running the suite

setup.sh installs with `-c constraints.txt`, so CI and a new machine test exactly these versions.
torch is left out: setup.sh installs it first, pinned by TORCH_VERSION, as a CPU or CUDA build.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("all", "test", "eval")
LEFT_OUT = {"torch", "rlhf"}


def project_requirements() -> list[Requirement]:
    """The package's own requirements with EXTRAS, its self-referencing extras (`rlhf[label,serve]`) expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras, todo, reqs = project["optional-dependencies"], list(EXTRAS), [Requirement(r) for r in project["dependencies"]]
    done: set[str] = set()
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for line in extras[extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == "rlhf":
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


def installed_closure(roots: list[Requirement]) -> dict[str, str]:
    """name -> installed version for the roots and everything they require (markers evaluated here)."""
    versions: dict[str, str] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        name, extras = canonicalize_name(req.name), frozenset(req.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"freeze_constraints: {name} (needed by the package) is not installed in {sys.prefix}")
        versions[name] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append(sub)
    return versions


def main() -> None:
    versions = installed_closure(project_requirements())
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(versions.items()) if name not in LEFT_OUT]
    header = ("# The versions CI installs and tests (scripts/setup.sh: pip install -c constraints.txt).\n"
              "# Written by scripts/freeze_constraints.py; torch is pinned by setup.sh's TORCH_VERSION instead.\n")
    (ROOT / "constraints.txt").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"constraints.txt: {len(lines)} packages")


if __name__ == "__main__":
    main()
