"""Runs side by side: the settings that differ between them, and what each scored.

Every run folder records its resolved settings (`config.yaml`) and, once finished, its
metrics (`metrics.json`) and predictions; comparing runs is reading those files, so it works
the same on the members of a sweep and on runs made months apart. A run without
`metrics.json` is unfinished and is skipped with a line saying so, never half-counted.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from geoguesser.errors import UserError
from geoguesser.workflow.runs import FINISHED_NAME, recorded_settings

# (column, split, metric key in metrics.json)
METRIC_COLUMNS = (
    ("val mean km", "val", "mean_km"),
    ("val median km", "val", "median_km"),
    ("val within 25 km", "val", "acc_25km"),
    ("test mean km", "test", "mean_km"),
    ("test median km", "test", "median_km"),
    ("test within 25 km", "test", "acc_25km"),
    ("baseline km", "test", "baseline_mean_km"),
)


@dataclass
class Run:
    """A finished run: its label, folder, flattened settings, metrics and errors per split."""

    label: str
    folder: Path
    settings: dict
    metrics: dict
    errors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return bool(self.metrics.get("synthetic", False))


def expand(arguments: list[str | Path]) -> list[Path]:
    """Run folders from folders and glob patterns (quoted `runs/sweep/*` included), in order."""
    folders: list[Path] = []
    for argument in map(str, arguments):
        matches = sorted(glob.glob(argument)) if glob.has_magic(argument) else [argument]
        if not matches:
            raise UserError(f"{argument}: matches no folder")
        folders += [Path(match) for match in matches if Path(match).is_dir() or match == argument]
    return list(dict.fromkeys(folders))


def flatten(settings: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; lists become their YAML-like text."""
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value) if isinstance(value, list | dict) else value
    return flat


def _labels(folders: list[Path]) -> list[str]:
    """Short, unique names: the folder name, with its parent when names repeat or in sweeps."""
    names = [folder.resolve().name for folder in folders]
    parents = {folder.resolve().parent for folder in folders}
    if len(set(names)) == len(names) and len(parents) == 1:
        return names
    return [f"{folder.resolve().parent.name}/{folder.resolve().name}" for folder in folders]


def load_runs(arguments: list[str | Path], say=print) -> list[Run]:
    """The finished runs among `arguments`; each one skipped is named by `say` in one line."""
    folders = expand(arguments)
    runs = []
    for folder, label in zip(folders, _labels(folders), strict=True):
        if not folder.is_dir():
            say(f"skipped {folder}: not a folder")
            continue
        if not (folder / FINISHED_NAME).is_file():
            say(f"skipped {folder}: unfinished (no {FINISHED_NAME})")
            continue
        try:
            metrics = json.loads((folder / FINISHED_NAME).read_text())
        except (OSError, ValueError) as exc:
            say(f"skipped {folder}: {FINISHED_NAME} unreadable ({exc})")
            continue
        settings = recorded_settings(folder) or {}
        settings.pop("name", None)
        errors = {}
        predictions = folder / "predictions.csv"
        if predictions.is_file():
            table = pd.read_csv(predictions, usecols=["split", "error_km"])
            errors = {str(s): g.error_km.to_numpy() for s, g in table.groupby("split")}
        runs.append(Run(label, folder, flatten(settings), metrics, errors))
    return runs


def differing(runs: list[Run]) -> list[str]:
    """The setting names whose values are not the same in every run, in schema order."""
    names = list(dict.fromkeys(name for run in runs for name in run.settings))
    return [
        name for name in names if len({repr(run.settings.get(name, "(unset)")) for run in runs}) > 1
    ]


def comparison_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: the settings that differ, then val/test metrics and the baseline."""
    keys = differing(runs)
    rows = []
    for run in runs:
        row = {"run": run.label + (" (SYNTHETIC)" if run.synthetic else "")}
        row.update({key: run.settings.get(key) for key in keys})
        for column, split, metric in METRIC_COLUMNS:
            row[column] = run.metrics.get(split, {}).get(metric, np.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def format_table(table: pd.DataFrame) -> str:
    """The table as text: km to one decimal, shares as percentages."""
    shown = table.copy()
    for column in shown.columns:
        if "within" in column:
            shown[column] = shown[column].map(lambda v: f"{v:.0%}" if pd.notna(v) else "-")
        elif column.endswith(" km"):
            shown[column] = shown[column].map(lambda v: f"{v:.1f}" if pd.notna(v) else "-")
    return shown.reset_index().to_string(index=False)
