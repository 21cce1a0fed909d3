"""Options and checks that several commands share, and the library defaults they show.

A default the library defines is read from the function or settings object a command drives,
so the CLI never restates a number that could drift from the code that uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

from geoguesser.errors import UserError


def default_of(function, parameter: str):
    """The default value of `parameter` in `function`'s signature."""
    return inspect.signature(function).parameters[parameter].default


def field_default(settings_class, field: str):
    """The default value of a dataclass field, e.g. `streetview.Settings`' `radius_m`."""
    return {f.name: f.default for f in dataclasses.fields(settings_class)}[field]


def add_border_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--border", type=Path, help="polygon file (default: the shipped Croatia)")
    parser.add_argument("--country", help="country name or ISO code inside --border")


def add_set_option(parser: argparse.ArgumentParser, **extra) -> None:
    """`--set KEY=VALUE`, repeatable: a settings override (see `config.loading`)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", **extra)


def add_max_image_px(parser: argparse.ArgumentParser, help: str) -> None:
    """`--max-image-px`, defaulting to the layout's own limit."""
    from geoguesser.data.layout import MAX_IMAGE_PX

    parser.add_argument("--max-image-px", type=int, default=MAX_IMAGE_PX, metavar="PX", help=help)


def check_max_image_px(args: argparse.Namespace) -> None:
    if args.max_image_px < 1:
        raise UserError(f"--max-image-px {args.max_image_px}: must be at least 1")


def add_runs_option(parser: argparse.ArgumentParser, help: str) -> None:
    """`--runs`, the runs root, defaulting to the pipeline's own."""
    from geoguesser.workflow.pipeline import run

    parser.add_argument("--runs", type=Path, default=Path(default_of(run, "runs_root")), help=help)
