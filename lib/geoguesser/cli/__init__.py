"""The `geoguesser` command: a thin layer that parses arguments and calls the stages below.

May import every other part of geoguesser; nothing imports it.
"""

from geoguesser.cli.main import build_parser, main, run_members, split_lab_args

__all__ = ["build_parser", "main", "run_members", "split_lab_args"]
