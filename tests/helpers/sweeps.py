"""One small sweep, `pair`: its arguments and its members' metrics, alone or run concurrently."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.configs import set_args, tiny_overrides

PAIR_SWEEP = ["--sweep", "grid.cell_km=80,120"]


def pair_arguments(dataset_dir: Path, cache_dir: Path, runs: Path) -> list[str]:
    """`geoguesser run --config configs/demo.yaml` arguments of the two-member sweep `pair`
    (one epoch each), without the config, which the SLURM scripts take first."""
    overrides = [*tiny_overrides(dataset_dir, cache_dir, max_epochs=1, freeze_epochs=0)]
    overrides += ["name=pair", "train.accelerator=cpu", "maps.worst=1"]
    return ["--runs", str(runs), *set_args(overrides), *PAIR_SWEEP]


def pair_metrics(sweep_dir: Path) -> dict[str, dict]:
    return {
        run.name: json.loads((run / "metrics.json").read_text())
        for run in sorted(sweep_dir.iterdir())
        if (run / "metrics.json").is_file()
    }
