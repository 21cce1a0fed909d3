"""A fit in a process of its own, so that a test can kill it for real (SIGKILL).

python fit_job.py INPUTS RUN_DIR SETTINGS_JSON [KILL_EPOCH KILL_BATCH]
INPUTS holds enriched.csv, cells.geojson and scaler.json; the metrics go to RUN_DIR/result.json.
"""

import json
import os
import signal
import sys
from pathlib import Path

import pandas as pd
from pytorch_lightning.callbacks import Callback

from geoguesser.config import TrainSettings
from geoguesser.geo.borders import load_border
from geoguesser.geo.coords import MinMaxScaler
from geoguesser.geo.grid import read_cells
from geoguesser.training.fit import train


class KillAt(Callback):
    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    inputs, run_dir, settings = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    callbacks = [KillAt(int(sys.argv[4]), int(sys.argv[5]))] if len(sys.argv) > 5 else []
    table = pd.read_csv(inputs / "enriched.csv", dtype={"uuid": str})
    cells = read_cells(inputs / "cells.geojson")
    scaler = MinMaxScaler.from_json((inputs / "scaler.json").read_text())
    result = train(
        TrainSettings(**settings), table, cells, scaler, run_dir, load_border(), callbacks
    )
    best = result.best_checkpoint.name
    summary = {"val": result.val, "test": result.test, "best": best, "epochs": result.epochs}
    (run_dir / "result.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
