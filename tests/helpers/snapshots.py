"""Snapshots of a folder tree, to prove that a command changed nothing in it (or exactly what)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time, to prove nothing changed."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def tree_bytes(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Every path under root with a hash of its bytes (None for a folder): byte-identical or not.

    Paths with a part in `skip` (such as the downloader's private `.download`) are left out.
    """
    return {
        str(p.relative_to(root)): _sha256(p) if p.is_file() else None
        for p in sorted(root.rglob("*"))
        if not set(p.relative_to(root).parts) & set(skip)
    }


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:  # not Path.read_bytes, which a test may make refuse
        return hashlib.sha256(handle.read()).hexdigest()
