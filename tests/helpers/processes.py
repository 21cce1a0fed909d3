"""The CLI as a process of its own, and finding the processes a fit left running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def geoguesser(*args, cwd: Path, timeout=1800) -> subprocess.CompletedProcess:
    # `timeout` bounds a hang: a shipped config's run takes minutes on a loaded machine
    return subprocess.run(
        [sys.executable, "-m", "geoguesser.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fit_processes(run_dir: Path) -> list[int]:
    """Processes still running a fit of `run_dir` (there must be none once a run is over)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"train" in command and str(run_dir).encode() in command:
                found.append(int(entry.name))
    return found
