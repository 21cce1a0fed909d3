"""`geoguesser serve`: the local server for trained checkpoints; its defaults and limits are
`geoguesser.serve.limits`', shown here, never restated.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from geoguesser.serve.command import serve

    serve(
        args.checkpoint,
        args.checkpoint_dir,
        args.host,
        args.port,
        top_k=args.top_cells,
        wait_ms=args.batch_wait_ms,
        max_batch=args.max_batch,
        max_upload_mb=args.max_upload_mb,
        allow_hosts=tuple(args.allow_host),
        allow_origins=tuple(args.allow_origin),
    )
    return 0


def _add_allowed(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="also answer requests addressed to this name (repeatable; the bound address "
        "and localhost always are)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept POSTs from pages of this origin, e.g. http://example.lan:3000 "
        "(repeatable; the server's own page always is)",
    )


def _add_batching(serve: argparse.ArgumentParser) -> None:
    from geoguesser.config import TOP_CELLS
    from geoguesser.serve import limits as served  # its defaults and limits, defined there once

    serve.add_argument(
        "--top-cells",
        type=int,
        default=TOP_CELLS,
        metavar="K",
        help="likeliest cells per answer (default %(default)s)",
    )
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=served.BATCH_WAIT_MS,
        metavar="MS",
        help="how long to gather concurrent requests into one forward pass (default %(default)s)",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=served.MAX_BATCH,
        help="requests in one forward pass at most (default %(default)s)",
    )
    serve.add_argument(
        "--max-upload-mb",
        type=float,
        default=served.MAX_UPLOAD_MB,
        metavar="MB",
        help="largest request accepted (default %(default)s)",
    )


def add_serve(commands) -> None:
    from geoguesser.serve import limits as served

    serve = commands.add_parser(
        "serve", help="a local server (page, /predict, /models) for trained checkpoints"
    )
    serve.add_argument("--checkpoint", type=Path, metavar="CKPT", help="the default model")
    serve.add_argument(
        "--checkpoint-dir", type=Path, metavar="DIR", help="also serve every *.ckpt under DIR"
    )
    serve.add_argument(
        "--host", default=served.HOST, help="address to listen on (default %(default)s: local)"
    )
    serve.add_argument("--port", type=int, default=served.PORT, help="(default %(default)s)")
    _add_allowed(serve)
    _add_batching(serve)
    serve.set_defaults(run=_serve)
