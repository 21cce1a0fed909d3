"""A second geoguesser checkout (notebooks and configs in a git repository of its own)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat

from helpers.paths import REPO

CLONE_MARK = "This copy of the notebooks belongs to the second checkout."


def make_checkout(root: Path) -> Path:
    """A second geoguesser checkout: this one's notebooks and configs in a git repository."""
    for folder in ("notebooks", "configs"):
        shutil.copytree(REPO / folder, root / folder)
    first = root / "notebooks" / "01-eda.ipynb"
    book = nbformat.read(first, as_version=4)
    book.cells.insert(1, nbformat.v4.new_markdown_cell(CLONE_MARK))
    nbformat.write(book, first)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], check=True)
    return root
