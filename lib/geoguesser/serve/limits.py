"""Every default and limit of `geoguesser serve`, defined here once: the server enforces them,
the CLI shows them as its defaults.
"""

import os

HOST = "127.0.0.1"  # local only; another address needs --host (and --allow-host for its names)
PORT = 8000
MAX_VIEWS = 4  # N, E, S, W
MAX_UPLOAD_MB = 20.0  # a whole request; Street View JPEGs are ~50 kB each
MAX_UPLOAD_BYTES = int(MAX_UPLOAD_MB * 2**20)
MAX_PIXELS = 40_000_000  # per image as its header declares: larger is refused unread
# Per image as decoded: JPEG decodes at a reduced scale (draft mode), so a 40 MP photograph
# is about 0.6 MP in memory; PNG and WEBP decode whole, so their size is capped here:
# 4096 x 4096 is 64 MB as RGBA and 48 MB as RGB, before the model's small copy is made.
MAX_DECODED_PIXELS = 4096 * 4096
DECODE_SLOTS = min(4, os.cpu_count() or 1)  # photographs decoded at once, over all requests
BATCH_WAIT_MS = 5.0  # how long the batcher waits for more requests after the first
MAX_BATCH = 32  # locations in one forward pass at most
SHUTDOWN_GRACE_S = 2  # after SIGTERM, how long requests in flight get to finish
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")  # always answered, with the server's port
# (lowest, highest) of each numeric option: checked before anything loads. A wait of hours
# or a batch of millions would make the server look hung.
OPTION_RANGES = {
    "--port": (0, 65535),
    "--top-cells": (1, 100),
    "--max-batch": (1, 1024),
    "--batch-wait-ms": (0.0, 1000.0),
    "--max-upload-mb": (0.1, 1024.0),
}
