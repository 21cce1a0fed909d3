"""The headless runner: execute the numbered notebooks in order with papermill.

A run is a folder `runs/<name>/` holding the resolved config with the code version, each
executed notebook, and every step's outputs. Each notebook reads its inputs from and writes
its outputs to that folder, so a run can start again from a later step (`start_from`).
The source notebooks are never overwritten.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import __version__
from .atomic import write_text
from .errors import UserError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
STEPS = ["01-eda", "02-grid", "03-crs-enrichment", "04-training", "05-error-maps"]
KERNEL_NAME = "geoguesser"


class StepFailed(Exception):
    """A notebook raised: the message names the step, the cell and the partial output."""


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    """A YAML config with `key.sub=value` overrides applied (values parsed as YAML)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: config not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict) or "name" not in config:
        raise UserError(f"{path}: a config is a mapping with at least a 'name'")
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value, e.g. train.max_epochs=3")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(text)
    return config


def code_version() -> dict:
    """The package version and, from a git checkout, the commit and whether it had edits."""
    version = {"geoguesser": __version__, "python": sys.version.split()[0]}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        )
        version.update({"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())})
    except (OSError, subprocess.CalledProcessError):
        version["commit"] = None
    return version


def step_parameters(config: dict, run_dir: Path) -> dict[str, dict]:
    """What papermill injects into each notebook's `parameters` cell: plain values only."""
    data, split, grid = config.get("data", {}), config.get("split", {}), config.get("grid", {})
    maps = config.get("maps", {})
    common = {
        "run_dir": str(run_dir),
        "border_path": data.get("border"),
        "country": data.get("country"),
    }
    return {
        "01-eda": {
            **common,
            "dataset_dirs": [str(Path(d).resolve()) for d in data.get("dataset_dirs", [])],
            "fractions": list(split.get("fractions", [0.8, 0.1, 0.1])),
            "seed": int(split.get("seed", config.get("seed", 0))),
            "dataset_frac": float(split.get("dataset_frac", 1.0)),
            "block_km": split.get("block_km"),
            "crs": data.get("crs", "EPSG:3766"),
            "offline_maps": bool(maps.get("offline", True)),
        },
        "02-grid": {
            **common,
            "cell_km": grid.get("cell_km", 50.0),
            "cell_deg": grid.get("cell_deg"),
            "min_train": int(grid.get("min_train", 1)),
            "compare_km": list(grid.get("compare_km", [150, 100, 50])),
            "crs": data.get("crs", "EPSG:3766"),
        },
        "03-crs-enrichment": {"run_dir": str(run_dir)},
        "04-training": {**common, "train_settings": dict(config.get("train", {}))},
        "05-error-maps": {
            **common,
            "offline_maps": bool(maps.get("offline", True)),
            "worst": int(maps.get("worst", 6)),
        },
    }


def ensure_kernel() -> str:
    """Register this interpreter as the Jupyter kernel `geoguesser` inside its own prefix."""
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (geoguesser)", prefix=sys.prefix)
    return KERNEL_NAME


def _step_index(start_from: str | None) -> int:
    if start_from is None:
        return 0
    matches = [
        i for i, step in enumerate(STEPS) if step.startswith(start_from) or step == start_from
    ]
    if len(matches) != 1:
        raise UserError(f"--from {start_from!r}: choose one of {', '.join(s[:2] for s in STEPS)}")
    return matches[0]


def run(
    config: dict,
    runs_root: str | Path = "runs",
    overwrite: bool = False,
    start_from: str | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
    progress: bool = True,
) -> Path:
    """Execute the steps into `runs_root/<name>`; returns the run folder."""
    import papermill

    run_dir = (Path(runs_root) / str(config["name"])).resolve()
    first = _step_index(start_from)
    if first == 0:
        if run_dir.exists() and not overwrite:
            raise UserError(
                f"{run_dir}: the run exists; pass --overwrite to replace it"
                " or --from NN to continue it"
            )
        if run_dir.exists():
            shutil.rmtree(run_dir)
    elif not run_dir.exists():
        raise UserError(f"{run_dir}: no run to continue from step {STEPS[first]}")
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {
        "config": config,
        "code_version": code_version(),
        "started": dt.datetime.now(dt.UTC).isoformat(),
    }
    resolved["steps"] = STEPS[first:]
    write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    kernel = ensure_kernel()
    parameters = step_parameters(config, run_dir)
    for step in STEPS[first:]:
        output = run_dir / f"{step}.ipynb"
        try:
            papermill.execute_notebook(
                str(notebook_dir / f"{step}.ipynb"),
                str(output),
                parameters=parameters[step],
                kernel_name=kernel,
                cwd=str(REPO),
                progress_bar=progress,
            )
        except papermill.PapermillExecutionError as exc:
            reason = str(exc.evalue).splitlines()[0] if exc.evalue else ""
            raise StepFailed(
                f"step {step} failed in cell {exc.exec_count}: {exc.ename}: {reason}"
                f"; the partial notebook is {output}"
            ) from None
    return run_dir
