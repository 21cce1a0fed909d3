"""`geoguesser train`: step 04 alone on a prepared run, the process torchrun and srun start."""

from __future__ import annotations

import argparse
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from geoguesser.config import load_settings
    from geoguesser.training.pruning import from_environment
    from geoguesser.workflow.fit_step import check_inputs, fit_run
    from geoguesser.workflow.launch import die_with_parent
    from geoguesser.workflow.runs import CONFIG_NAME

    die_with_parent()
    run_dir = args.run_dir.absolute()
    check_inputs(run_dir)
    settings = load_settings(run_dir / CONFIG_NAME)  # the run's settings, as recorded
    summary = fit_run(settings, run_dir, from_environment())  # a tuning trial's: its pruning
    if summary is not None:
        print(f"wrote checkpoints, predictions.csv and training.json to {run_dir}", flush=True)
    return 0


def add_train(commands) -> None:
    fit = commands.add_parser(
        "train", help="step 04 alone: fit, test and predict a run (what torchrun and srun start)"
    )
    fit.add_argument(
        "--run-dir", type=Path, required=True, metavar="RUN_DIR", help="a run with steps 01-03 done"
    )
    fit.set_defaults(run=_train)
