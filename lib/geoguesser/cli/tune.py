"""`geoguesser tune`: an Optuna study of ordinary runs, shared by any number of workers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geoguesser.cli.options import add_runs_option, add_set_option
from geoguesser.errors import UserError


def _tune(args: argparse.Namespace) -> int:
    from geoguesser.workflow.pipeline import Interrupted
    from geoguesser.workflow.study import best_table, pruning_statistics, write_best_config
    from geoguesser.workflow.tuning import plan, tune

    if args.trials < 1:
        raise UserError(f"--trials {args.trials}: must be at least 1")
    if args.worker < 0:
        raise UserError(f"--worker {args.worker}: must be 0 or more")
    tuning = plan(args.config, args.set, args.space, args.runs, args.study, args.storage)
    tuning.notebooks = args.notebooks
    try:
        study = tune(tuning, args.trials, args.worker)
    except Interrupted:
        print("geoguesser tune: interrupted; run the same command again to continue the study",
              file=sys.stderr)  # fmt: skip
        return 130
    print(f"study {tuning.name}: {tuning.storage}")
    print(best_table(study))
    best = write_best_config(study, tuning.study_dir)
    if best is None:  # every trial pruned or failed (or added by hand): nothing to rerun
        print("no trial of this study has completed a run: no best settings to rerun")
        stats = pruning_statistics(study)
        return 0 if stats["pruned"] else 1
    print(f"the best trial's settings: {best}")
    print(f"rerun it as a plain run:   geoguesser run --config {best} --runs {args.runs}")
    return 0


def add_tune(commands) -> None:
    tune = commands.add_parser(
        "tune", help="search settings with Optuna: each trial an ordinary run under RUNS/<study>/"
    )
    tune.add_argument("--config", type=Path, required=True, help="the settings trials start from")
    add_set_option(tune, help="override a setting of every trial (as for geoguesser run)")
    tune.add_argument(
        "--space", type=Path, required=True, metavar="SPACE.yaml",
        help="the settings to search and their ranges (docs: Tuning)",
    )  # fmt: skip
    tune.add_argument(
        "--trials", type=int, required=True, metavar="N",
        help="the study's budget of trials, shared by every worker on it",
    )  # fmt: skip
    tune.add_argument("--study", metavar="NAME", help="study and folder name (default: the name)")
    tune.add_argument(
        "--storage", metavar="URL",
        help="SQLAlchemy URL of the study's database (default: sqlite in RUNS/<study>/study.db)",
    )  # fmt: skip
    tune.add_argument(
        "--worker", type=int, default=0, metavar="W",
        help="this worker's index (the sampler's seed + W): give each concurrent worker its own",
    )  # fmt: skip
    add_runs_option(tune, help="where the study's folder goes (default: %(default)s)")
    tune.add_argument(
        "--notebooks", type=Path, metavar="DIR", help="notebooks to run (default: this checkout's)"
    )
    tune.set_defaults(run=_tune)
