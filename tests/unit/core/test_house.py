"""The library's layout keeps its rules: stages import only the stages below them, rooms stay small.

These are the rules a newcomer relies on to guess where a function lives (see the Development page
of the docs); a change that breaks one fails here, with the module and the line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.paths import REPO

PACKAGE = REPO / "lib" / "geoguesser"
# Each stage may import the stages of a lower rank; peers (same rank) do not import each other.
RANKS = {
    "core": 0,  # config/, errors.py, atomic.py, progress.py, style.py, __init__.py
    "geo": 1,
    "data": 2,
    "model": 3,
    "training": 4,
    "analysis": 5,
    "inference": 5,
    "serve": 6,
    "workflow": 7,
    "cli": 8,
}
CORE_MODULES = {"config", "errors", "atomic", "progress", "style", "__init__"}
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_CLASS_LINES = 400, 60, 150


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def stage_of(dotted: str) -> str:
    """`geoguesser.model.locator` -> model; `geoguesser.errors`, `geoguesser.config.x` -> core."""
    parts = dotted.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return "core" if top in CORE_MODULES else top


def dotted_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(relative.parts).removesuffix(".__init__")


def imported(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "relative"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    ours = ("geoguesser", "relative")
    return [(line, name) for line, name in found if name.split(".")[0] in ours]


def test_every_stage_is_a_known_package_with_a_docstring_that_says_what_it_may_import():
    stages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")} - {"config"}
    assert stages == set(RANKS) - {"core"}
    for stage in stages:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"{stage}/__init__.py: say what it may import"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_lower_stages_absolutely(path):
    here = stage_of(dotted_name(path))
    for line, name in imported(ast.parse(path.read_text())):
        where = f"{path.relative_to(REPO)}:{line}"
        assert name != "relative", f"{where}: imports are absolute (from geoguesser.x import y)"
        there = stage_of(name)
        if there == here:
            continue
        assert RANKS[there] < RANKS[here], f"{where}: {here} imports {name} ({there})"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_rooms_stay_small(path):
    text = path.read_text()
    where = path.relative_to(REPO)
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{where}: over {MAX_MODULE_LINES} lines"
    tree = ast.parse(text)
    assert ast.get_docstring(tree), f"{where}: its first docstring line says its job"
    for node in ast.walk(tree):
        lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert lines <= MAX_FUNCTION_LINES, f"{where}:{node.lineno}: {node.name}, {lines} lines"
        elif isinstance(node, ast.ClassDef) and not is_settings_section(node):
            assert lines <= MAX_CLASS_LINES, f"{where}:{node.lineno}: {node.name}, {lines} lines"


def is_settings_section(node: ast.ClassDef) -> bool:
    """The settings schema's declarative classes: one field per key, their size is the schema's."""
    return any(getattr(base, "id", None) == "Section" for base in node.bases)
