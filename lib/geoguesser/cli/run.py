"""`geoguesser run`: the notebooks in order as one run, a sweep of sibling runs, or the dry
run that checks either before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geoguesser.cli.options import add_runs_option, add_set_option
from geoguesser.errors import UserError


def _run(args: argparse.Namespace) -> int:
    from geoguesser.config import load_settings
    from geoguesser.workflow.pipeline import Interrupted, StepFailed, run
    from geoguesser.workflow.runs import is_finished

    if args.sweep_index is not None and not args.sweep:
        raise UserError("--sweep-index needs the --sweep settings it indexes")
    if args.dry_run:
        return _dry_run(args)
    if args.sweep:
        return _sweep(args)
    settings = load_settings(args.config, args.set)
    try:
        run_dir = run(
            settings,
            runs_root=args.runs,
            overwrite=args.overwrite,
            start_from=args.start_from,
            notebook_dir=args.notebooks,
            config_file=args.config,
            overrides=args.set,
            stop_after=args.stop_after,
        )
    except StepFailed as failure:
        print(f"geoguesser run: {failure}", file=sys.stderr)
        return 1
    except Interrupted as interrupted:
        print(f"geoguesser run: {interrupted}", file=sys.stderr)
        return 130
    if args.stop_after is not None and not is_finished(run_dir):
        print(f"run stopped after step {args.stop_after}: {run_dir}")
        return 0
    _print_finished(run_dir)
    return 0


def _print_finished(run_dir: Path) -> None:
    """A finished run's result, and where to look at it next."""
    from geoguesser.workflow.runs import result_line

    print(f"run finished: {run_dir}")
    print(result_line(run_dir))
    for name, hint in [
        ("executed notebooks", f"{run_dir}/0*.ipynb"),
        ("error map", f"{run_dir}/maps/errors.html"),
        ("in JupyterLab", f"geoguesser open {run_dir.name} --runs {run_dir.parent}"),
        ("training curves", f"tensorboard --logdir {run_dir}/tb"),
    ]:
        print(f"  {name:<18} {hint}")


def run_members(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The settings `geoguesser run` would run, checked as it checks them: one run's, or every
    sweep member's (labelled by name), before anything else happens."""
    from geoguesser.config import load_settings
    from geoguesser.workflow.sweeps import plan, select

    if not args.sweep:
        return [(str(args.config), load_settings(args.config, args.set))]
    members = select(plan(args.config, args.set, args.sweep)[1], args.sweep_index)
    return [(f"sweep member {m.index} ({m.name})", m.settings) for m in members]


def _dry_run(args: argparse.Namespace) -> int:
    from geoguesser.workflow.dryrun import dry_run

    return dry_run(run_members(args), args.runs, args.config)


def _sweep(args: argparse.Namespace) -> int:
    from geoguesser.workflow.pipeline import Interrupted
    from geoguesser.workflow.sweeps import run_sweep, table

    if args.start_from:
        raise UserError("--from does not apply to sweeps: re-running one continues it")
    try:
        outcomes = run_sweep(
            args.config,
            args.set,
            args.sweep,
            args.runs,
            overwrite=args.overwrite,
            index=args.sweep_index,
            notebook_dir=args.notebooks,
        )
    except Interrupted:
        print("geoguesser run: interrupted; run the same command again to continue the sweep")
        return 130
    print(table(outcomes))
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0


def add_run(commands) -> None:
    run = commands.add_parser("run", help="execute the notebooks in order with papermill")
    run.add_argument("--config", type=Path, required=True)
    add_set_option(
        run, help="override a setting; the value is YAML (e.g. data.dataset_dirs=[a, b])"
    )
    add_runs_option(run, help="where run folders go (default: %(default)s)")
    run.add_argument(
        "--overwrite", action="store_true", help="replace an existing run folder made by geoguesser"
    )
    run.add_argument(
        "--from", dest="start_from", metavar="NN", help="start at step NN, reusing earlier outputs"
    )
    run.add_argument(
        "--to",
        dest="stop_after",
        metavar="NN",
        help="stop after step NN (e.g. --to 03, then the fit on a cluster, then --from 05)",
    )
    run.add_argument(
        "--notebooks", type=Path, metavar="DIR", help="notebooks to run (default: this checkout's)"
    )
    run.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="run every combination of these values as sibling runs under RUNS/<name>/",
    )
    run.add_argument(
        "--sweep-index", type=int, metavar="I", help="run only sweep member I (from 0)"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything that can be known before the first epoch (data, weights, disk,"
        " memory, accelerator, one timed step) and print it; writes nothing",
    )
    run.set_defaults(run=_run)
