"""The `geoguesser` command: thin wrappers over the library, one subcommand per task.

Each command module under `geoguesser.cli` adds its own sub-parser and holds its handler;
this module puts them together in the order `--help` lists them and runs the one asked for.
"""

from __future__ import annotations

import argparse
import sys

from geoguesser.cli import compare, config, data, predict, run, serve, train, tune
from geoguesser.cli import open as lab
from geoguesser.cli.errors import run_command
from geoguesser.cli.open import split_lab_args

# Each adds one sub-parser; the order is the order of `geoguesser --help`.
COMMANDS = (
    data.add_validate,
    data.add_synth,
    predict.add_predict,
    serve.add_serve,
    run.add_run,
    tune.add_tune,
    lab.add_open,
    train.add_train,
    config.add_config,
    compare.add_compare,
    data.add_sample_coords,
    data.add_download,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoguesser", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv, lab_args = split_lab_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    if args.command == "open":
        args.lab_args = lab_args
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
