"""constraints.txt, the versions CI installs and tests, covers what pyproject.toml asks for."""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _freeze_script():
    spec = importlib.util.spec_from_file_location("freeze_constraints", ROOT / "scripts" / "freeze_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_requirement_is_pinned_within_its_range():
    """Fails when a dependency is added, or a floor raised, without running freeze_constraints.py."""
    pins = _pins()
    for req in _freeze_script().project_requirements():
        name = canonicalize_name(req.name)
        if name == "torch":  # pinned by setup.sh's TORCH_VERSION
            continue
        assert name in pins, f"{name} is required by pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), f"{name}=={pins[name]} is not {req}"


@pytest.mark.skipif(not os.environ.get("CI"), reason="CI's fresh .venv is installed from constraints.txt; "
                    "a developer's may hold other versions")
def test_ci_runs_on_the_pinned_versions():
    wrong = {name: (version, metadata.version(name)) for name, version in _pins().items()
             if metadata.version(name).split("+")[0] != version}
    assert not wrong, f"installed versions differ from constraints.txt (pinned, installed): {wrong}"
