"""How a command's failure reaches the user: one line per problem, and an exit status.

A UserError (bad data, bad arguments) becomes one line per problem on stderr and exit
status 2, with no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from geoguesser.errors import UserError, printable


def run_command(args: argparse.Namespace) -> int:
    """Call the parsed command's handler; a user's error or Ctrl-C ends it in one line."""
    try:
        return args.run(args)
    except UserError as error:
        for line in printable(error).splitlines() or ["error"]:
            print(f"geoguesser {args.command}: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geoguesser {args.command}: interrupted", file=sys.stderr)
        return 130
