"""`geoguesser open RUN [STEP]`: JupyterLab on a run's own copies of the notebooks.

An interactive session must not work on the tracked notebooks: Lab autosaves outputs and
edited parameters into whatever it opened. So, as a headless run leaves them, the run
folder holds its own copy of each step (`runs/NAME/04-training.ipynb`, its parameters
pointing at the run and its config.yaml), made here when missing and never overwritten:
an executed or edited copy is the run's record. Lab opens on the chosen step's copy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat

from geoguesser.errors import UserError
from geoguesser.workflow.runs import CONFIG_NAME, STEPS, find_checkout, is_run, step_index


def run_parameters(run_dir: Path) -> dict:
    """What each step receives, headless or in Lab: the run folder and its own config.yaml."""
    return {"run_dir": str(run_dir), "config": str(run_dir / CONFIG_NAME), "overrides": []}


def copy_notebooks(run_dir: Path, notebooks: Path) -> list[Path]:
    """The run's copy of each step, made from `notebooks` where the run has none yet."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    made = []
    for step in STEPS:
        target = run_dir / f"{step}.ipynb"
        if target.exists():
            continue
        book = load_notebook_node(str(notebooks / f"{step}.ipynb"))  # as papermill reads it
        book = parameterize_notebook(book, run_parameters(run_dir), engine_name="nbclient")
        nbformat.write(book, target)
        made.append(target)
    return made


def lab_command(root: Path, notebook: Path, lab_args: list[str]) -> list[str]:
    """`jupyter lab` rooted at `root`, opening on `notebook` (relative to any base URL)."""
    relative = notebook.relative_to(root).as_posix()
    return [
        sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url=/lab/tree/{relative}", *lab_args,
    ]  # fmt: skip


def lab_root(run_dir: Path, cwd: Path | None = None) -> Path:
    """The checkout when the run is inside it (configs/ and notebooks/ at hand), else the run.

    The checkout is the one holding `cwd` (the current directory by default), where
    `geoguesser open` was started.
    """
    checkout = find_checkout(Path.cwd() if cwd is None else cwd)
    if checkout is not None and run_dir.is_relative_to(checkout):
        return checkout
    return run_dir


def open_run(
    run_dir: Path, step: str | None, notebooks: Path, lab_args: list[str]
) -> tuple[list[str], list[Path]]:
    """The run's notebook copies (made when missing) and the command that opens Lab on them."""
    if not is_run(run_dir):
        raise UserError(f"{run_dir}: no run there; start one with --config")
    made = copy_notebooks(run_dir, notebooks)
    notebook = run_dir / f"{STEPS[step_index(step, 'STEP')]}.ipynb"
    return lab_command(lab_root(run_dir), notebook, lab_args), made


def start(command: list[str]) -> None:
    """Become JupyterLab (exec): Ctrl-C and signals reach it, as if started by hand."""
    from geoguesser.workflow.pipeline import ensure_kernel

    ensure_kernel()
    sys.stdout.flush()
    os.execv(command[0], command)
