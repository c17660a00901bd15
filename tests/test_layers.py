"""Imports run one way: contracts ← core ← emitter / worker side / analyst ← dev tools ← CLI.

Every ``import`` in every module under ``agentstream/`` (module level, inside functions and
under ``TYPE_CHECKING`` alike) is checked against the table below, and no file of the
repository imports the folders ``schemas``, ``processors`` or ``sinks`` by their folder
names: installed, they exist only as ``agentstream.schemas`` and so on.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import agentstream

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(agentstream.__file__).parent

#: component → the components it may import (besides itself)
ALLOWED: dict[str, frozenset[str]] = {
    "schemas": frozenset(),
    "core": frozenset({"schemas"}),
    "emitter": frozenset({"schemas", "core"}),
    "testing": frozenset({"schemas", "core", "emitter"}),
    "processors": frozenset({"schemas", "core"}),
    "sinks": frozenset({"schemas", "core"}),
    "worker": frozenset({"schemas", "core", "processors", "sinks"}),
    "devtools": frozenset({"schemas", "core", "emitter", "processors", "sinks", "worker"}),
    "cli": frozenset(
        {"schemas", "core", "emitter", "processors", "sinks", "worker", "devtools", "testing"}
    ),
    "__main__": frozenset({"cli"}),
}
#: the folders that are installed under ``agentstream.`` and must never be imported bare
FOLDERS = ("schemas", "processors", "sinks")


def _component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "agentstream" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "agentstream":  # ``from agentstream import schemas``
                found += [f"agentstream.{a.name}" for a in node.names if a.name in ALLOWED]
    return found


def _module_files() -> list[tuple[str, Path]]:
    files = []
    # os.walk, not Path.rglob: schemas/, processors/ and sinks/ are reached through symlinks
    paths = [
        Path(folder, name)
        for folder, _, names in os.walk(PACKAGE, followlinks=True)
        for name in names
        if name.endswith(".py")
    ]
    for path in sorted(paths):
        relative = path.relative_to(PACKAGE)
        if relative == Path("__init__.py"):
            continue  # the public names' lazy table; ``test_public_api`` covers it
        files.append((relative.parts[0].removesuffix(".py"), path))
    return files


def test_every_component_is_in_the_table() -> None:
    components = {component for component, _ in _module_files()}
    assert components <= set(ALLOWED), components - set(ALLOWED)
    assert {"schemas", "core", "emitter", "processors", "sinks", "cli"} <= components


@pytest.mark.parametrize("component", sorted(ALLOWED))
def test_imports_run_one_way(component: str) -> None:
    offenders = []
    for owner, path in _module_files():
        if owner != component:
            continue
        for module in _imports(path):
            target = _component(module)
            if target is None and module != "agentstream":
                continue
            if module == "agentstream" and component not in {"cli", "devtools", "testing"}:
                offenders.append(f"{path.relative_to(PACKAGE)}: {module}")
            elif target and target != component and target not in ALLOWED[component]:
                offenders.append(f"{path.relative_to(PACKAGE)}: {module}")
    assert offenders == []


def test_processors_and_sinks_meet_only_through_topics_and_tables() -> None:
    assert "sinks" not in ALLOWED["processors"]
    assert "processors" not in ALLOWED["sinks"]


def test_no_file_imports_the_folders_by_their_bare_names() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0].startswith(".") or relative.parts[0] in {"build", "dist"}:
            continue
        offenders += [
            f"{relative}: {module}"
            for module in _imports(path)
            if module.split(".")[0] in FOLDERS
        ]
    assert offenders == []
