"""`geoguesser open`: JupyterLab on a run's own copies of the notebooks, started from a config
when the run does not exist yet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geoguesser.cli.options import add_runs_option, add_set_option
from geoguesser.errors import UserError


def split_lab_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """`geoguesser open RUN -- OPTIONS`: our arguments, and the options that are jupyter lab's."""
    if "--" in argv and "open" in argv[: argv.index("--")]:
        return argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    return argv, []


def _open(args: argparse.Namespace) -> int:
    from geoguesser.config import load_settings
    from geoguesser.workflow.lab import open_run, start
    from geoguesser.workflow.pipeline import notebooks_of
    from geoguesser.workflow.runs import find_checkout, prepare, record_invocation, run_folder

    notebooks = notebooks_of(args.notebooks)
    run_dir = run_folder(args.runs, args.name)
    if args.config is not None and not run_dir.exists():
        settings = load_settings(args.config, args.set)
        if settings.name != args.name:
            settings = settings.model_copy(update={"name": args.name})
        with prepare(run_dir, 0, overwrite=False):
            record_invocation(
                run_dir, settings, [], args.config, args.set, find_checkout(notebooks)
            )
    elif args.set:
        raise UserError(f"--set: {run_dir} exists; change its settings in a notebook's overrides")
    command, made = open_run(run_dir, args.step, notebooks, args.lab_args)
    made_text = f" (copied {len(made)} from {notebooks})" if made else ""
    print(f"JupyterLab on the run's own notebooks: {run_dir}/0*.ipynb{made_text}", flush=True)
    print("the tracked notebooks stay as committed; outputs and edits stay in the run", flush=True)
    start(command)
    return 0  # not reached: this process is JupyterLab now


def add_open(commands) -> None:
    from geoguesser.workflow.runs import STEPS

    lab = commands.add_parser(
        "open",
        help="JupyterLab on a run's own copies of the notebooks (never the tracked ones)",
        epilog="options after -- go to jupyter lab, e.g. geoguesser open dev 02 -- --no-browser",
    )
    lab.add_argument("name", metavar="RUN", help="run name under --runs (e.g. dev)")
    lab.add_argument(
        "step",
        nargs="?",
        metavar="STEP",
        help=f"the step to open, e.g. 02 (default {STEPS[0][:2]})",
    )
    lab.add_argument(
        "--config", type=Path, help="start the run from this config when it does not exist yet"
    )
    add_set_option(lab)
    add_runs_option(lab, help="the runs root (default %(default)s)")
    lab.add_argument("--notebooks", type=Path, metavar="DIR", help="the notebooks to copy")
    lab.set_defaults(run=_open, lab_args=[])
