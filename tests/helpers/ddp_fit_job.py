"""`geoguesser train --run-dir RUN_DIR`, with a callback that can kill the whole fit for real.

python ddp_fit_job.py RUN_DIR [KILL_EPOCH KILL_BATCH]
Lightning starts this script again for each further rank; at (epoch, batch) rank 0 sends
SIGKILL to the process group (start the job in a session of its own), every rank included.
"""

import os
import signal
import sys
from pathlib import Path

from pytorch_lightning.callbacks import Callback

from geoguesser.config import load_settings
from geoguesser.workflow.fit_step import fit_run
from geoguesser.workflow.runs import CONFIG_NAME


class KillAllAt(Callback):
    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        at = (trainer.current_epoch, batch_idx) == (self.epoch, self.batch)
        if at and trainer.global_rank == 0:
            os.killpg(os.getpgrp(), signal.SIGKILL)


def main() -> None:
    run_dir = Path(sys.argv[1])
    callbacks = [KillAllAt(int(sys.argv[2]), int(sys.argv[3]))] if len(sys.argv) > 3 else []
    fit_run(load_settings(run_dir / CONFIG_NAME), run_dir, callbacks)


if __name__ == "__main__":
    main()
