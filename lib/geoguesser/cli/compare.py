"""`geoguesser compare`: finished runs side by side, as a table and optionally two figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geoguesser.errors import UserError


def _compare(args: argparse.Namespace) -> int:
    from geoguesser.workflow.compare import comparison_table, format_table, load_runs

    runs = load_runs(args.runs, say=lambda line: print(line, file=sys.stderr))
    if not runs:
        raise UserError("no finished run to compare (a run is finished when metrics.json exists)")
    table = comparison_table(runs)
    print(format_table(table))
    if args.out is not None:
        _write_figures(args, table, runs)
    return 0


def _write_figures(args: argparse.Namespace, table, runs) -> None:
    from geoguesser.analysis.plots import cumulative_runs_figure, runs_against_baseline_figure
    from geoguesser.atomic import write_csv
    from geoguesser.style import save

    errors = {
        row: run.errors[args.split]
        for row, run in zip(table.index, runs, strict=True)
        if args.split in run.errors
    }
    write_csv(table.reset_index(), args.out / "compare.csv")
    save(cumulative_runs_figure(errors, args.split), args.out / "cumulative.png")
    save(runs_against_baseline_figure(table, args.split), args.out / "mean_km.png")
    print(f"wrote compare.csv, cumulative.png and mean_km.png to {args.out}")


def add_compare(commands) -> None:
    compare = commands.add_parser(
        "compare", help="finished runs side by side: differing settings and their metrics"
    )
    compare.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run folders or globs, e.g. 'runs/sweep/*'"
    )
    compare.add_argument(
        "--out", type=Path, metavar="DIR", help="also write compare.csv and the two figures here"
    )
    compare.add_argument(
        "--split", choices=["val", "test"], default="test", help="split of the figures"
    )
    compare.set_defaults(run=_compare)
