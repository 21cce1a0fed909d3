"""The `geoguesser` command: a thin layer that parses arguments and calls the stages below.

One module per command (or small group: `data` holds validate, synth, sample-coords and
download), each adding its own sub-parser; `main` puts them together. May import every other
part of geoguesser; nothing imports it.
"""

from geoguesser.cli.main import build_parser, main
from geoguesser.cli.open import split_lab_args
from geoguesser.cli.run import run_members

__all__ = ["build_parser", "main", "run_members", "split_lab_args"]
