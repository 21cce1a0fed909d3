"""`geoguesser config`: check a config and print its resolved settings, or the whole schema."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from geoguesser.cli.options import add_set_option
from geoguesser.errors import UserError


def _config(args: argparse.Namespace) -> int:
    from geoguesser.config import load_settings, schema_markdown

    if args.schema:
        print(schema_markdown(), end="")
        return 0
    if args.config is None:
        raise UserError("give a config file to check, or --schema")
    settings = load_settings(args.config, args.set)
    print(yaml.safe_dump(settings.to_yaml_dict(), sort_keys=False), end="")
    return 0


def add_config(commands) -> None:
    config = commands.add_parser("config", help="check a config and print its resolved settings")
    config.add_argument("config", type=Path, nargs="?", metavar="CONFIG")
    add_set_option(config)
    config.add_argument(
        "--schema", action="store_true", help="print every setting as Markdown tables"
    )
    config.set_defaults(run=_config)
