"""`geoguesser serve`: check what the user gave, bind the port, load the default model, serve.

Every check runs before anything loads, cheapest first, so a mistake is one line at once; a
checkpoint that cannot load is one line too, and nothing a request sends can stop the server.
"""

from __future__ import annotations

import math
import socket
import warnings
from pathlib import Path

from PIL import Image

from geoguesser.errors import UserError
from geoguesser.serve.app import create_app
from geoguesser.serve.guards import Trust
from geoguesser.serve.limits import (
    BATCH_WAIT_MS,
    HOST,
    MAX_BATCH,
    MAX_PIXELS,
    MAX_UPLOAD_MB,
    OPTION_RANGES,
    PORT,
    SHUTDOWN_GRACE_S,
)
from geoguesser.serve.store import ModelStore


def check_option(option: str, value: float | None) -> None:
    """UserError unless `value` is a finite number within OPTION_RANGES[option] (None: unset)."""
    if value is None:
        return
    low, high = OPTION_RANGES[option]
    if not (math.isfinite(value) and low <= value <= high):
        shown = value if isinstance(value, int) else f"{value:g}"
        raise UserError(f"{option} {shown}: must be a number from {low:g} to {high:g}")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a taken port is one line before anything loads."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as error:
        sock.close()
        errno, strerror = getattr(error, "errno", None), getattr(error, "strerror", None)
        reason = "in use" if errno in (98, 48, 10048) else (strerror or str(error))
        raise UserError(f"{host}:{port}: cannot listen there ({reason})") from None
    sock.listen(128)
    return sock


def serve(
    checkpoint: Path | None,
    checkpoint_dir: Path | None,
    host: str = HOST,
    port: int = PORT,
    top_k: int | None = None,
    wait_ms: float = BATCH_WAIT_MS,
    max_batch: int = MAX_BATCH,
    max_upload_mb: float = MAX_UPLOAD_MB,
    allow_hosts: tuple[str, ...] = (),
    allow_origins: tuple[str, ...] = (),
) -> None:
    """Check everything the user gave (numbers, names, models, port), then serve until stopped.

    Every check runs before anything loads, cheapest first; SIGTERM or Ctrl-C stops the
    server, giving requests in flight SHUTDOWN_GRACE_S to finish.
    """
    import uvicorn

    for option, value in (
        ("--port", port),
        ("--top-cells", top_k),
        ("--max-batch", max_batch),
        ("--batch-wait-ms", wait_ms),
        ("--max-upload-mb", max_upload_mb),
    ):
        check_option(option, value)
    if checkpoint is None and checkpoint_dir is None:
        raise UserError("give --checkpoint CKPT or --checkpoint-dir DIR (or both)")
    trust = Trust.of(host, port, allow_hosts, allow_origins)
    sock = bind(host, port)  # the quickest check of what is left, and nothing is loaded yet
    try:
        store = ModelStore(checkpoint, checkpoint_dir)  # the files are there and are files
        store.load_default()  # the default model must load: a bad checkpoint is one line now
    except UserError:
        sock.close()
        raise
    store.announce = True
    bound_port = sock.getsockname()[1]
    if bound_port != port:  # --port 0: the system picked one, and the Host names carry it
        trust = Trust.of(host, bound_port, allow_hosts, allow_origins)
    # A photograph over Pillow's own bomb limit is refused like one over ours, not warned of.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    app = create_app(
        store, top_k, wait_ms / 1000, max_batch, int(max_upload_mb * 2**20), trust=trust
    )
    where = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}/"
    print(f"serving {len(store.paths)} model(s), default {store.default}: {where}", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    uvicorn.Server(config).run(sockets=[sock])
