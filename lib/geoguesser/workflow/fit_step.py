"""The training step of a run as one process: what `geoguesser train --run-dir R` does.

It reads the run's settings (`R/config.yaml`) and the outputs of steps 01 to 03, fits and
tests through `train.train`, and on rank 0 alone writes what step 04 promises:
`predictions.csv` (val and test, predicted in one process from the best checkpoint, so each
location appears exactly once whatever the number of training processes) and, last,
`training.json`. The same command runs as a child of the 04 notebook (launch.py), and under
torchrun or srun on a cluster, where every process runs it and Lightning finds its rank
in the environment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from lightning_fabric.utilities.rank_zero import rank_zero_only

from geoguesser.atomic import write_csv, write_text
from geoguesser.config import Settings
from geoguesser.errors import UserError
from geoguesser.workflow.launch import PARENT_ENV
from geoguesser.workflow.runs import (
    STEPS,
    completed_steps,
    is_run,
    mark_completed,
    record_made_with,
)

INPUTS = ("enriched.csv", "cells.geojson", "scaler.json")
SUMMARY_NAME = "training.json"
PREDICTIONS_NAME = "predictions.csv"


def check_inputs(run_dir: Path) -> None:
    """One line when `run_dir` is not a run with steps 01 to 03 done, before anything loads."""
    if not is_run(run_dir):
        raise UserError(f"{run_dir}: not a geoguesser run folder (make one with geoguesser run)")
    missing = [name for name in INPUTS if not (run_dir / name).is_file()]
    if missing:
        raise UserError(
            f"{run_dir}: no {missing[0]}; run steps 01 to 03 first "
            "(geoguesser run --config CONFIG, or --from 01)"
        )


def fit_run(settings: Settings, run_dir: str | Path, callbacks: list | None = None) -> dict | None:
    """Fit and test the run's model; rank 0 writes the outputs and returns the summary.

    `callbacks` go to the Trainer (as for `train.train`).
    """
    from geoguesser.geo.borders import load_border
    from geoguesser.geo.coords import MinMaxScaler
    from geoguesser.geo.grid import read_cells
    from geoguesser.inference.predict import predict_table
    from geoguesser.model.checkpoint import load_checkpoint
    from geoguesser.training.fit import train

    run_dir = Path(run_dir).absolute()
    check_inputs(run_dir)
    table = pd.read_csv(run_dir / "enriched.csv", dtype={"uuid": str})
    cells = read_cells(run_dir / "cells.geojson")
    scaler = MinMaxScaler.from_json((run_dir / "scaler.json").read_text())
    border = load_border(settings.data.border, settings.data.country)
    if rank_zero_only.rank == 0:  # an earlier fit's results must not pass for this one's
        for name in (SUMMARY_NAME, PREDICTIONS_NAME):
            (run_dir / name).unlink(missing_ok=True)
    result = train(settings.train, table, cells, scaler, run_dir, border, callbacks)
    if rank_zero_only.rank != 0:
        return None
    model = load_checkpoint(result.best_checkpoint)
    held_out = table[table.split.isin(["val", "test"])]
    predictions = predict_table(
        model, held_out, batch_size=settings.train.batch_size, top_k=settings.maps.top_cells
    )
    write_csv(predictions, run_dir / PREDICTIONS_NAME)
    summary = {
        "best_checkpoint": str(result.best_checkpoint),
        "last_checkpoint": str(result.last_checkpoint),
        "epochs": result.epochs,
        "processes": result.processes,
        "val": result.val,
        "test": result.test,
    }
    write_text(run_dir / SUMMARY_NAME, json.dumps(summary, indent=2))
    # A fit launched by hand (torchrun, srun) is step 04 whole: `--from 05` may follow. One
    # that step 04 launched is not: the notebook still draws its figures, then marks itself.
    if completed_steps(run_dir) == STEPS[:3] and PARENT_ENV not in os.environ:
        mark_completed(run_dir, STEPS[:4])
        record_made_with(run_dir, STEPS[3], settings)
    return summary
