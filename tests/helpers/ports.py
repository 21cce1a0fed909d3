"""Servers the tests start as processes: a free loopback port, and waiting until one answers."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from typing import IO


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(
    process: subprocess.Popen, url: str, output: IO[str], exited: str, silent: str
) -> None:
    """Return once `url` answers; if `process` exits first, its `output` in a RuntimeError.

    `exited` and `silent` begin the errors for a process that exits and one that never
    answers (then it is terminated).
    """
    for _ in range(1200):  # a bound on a hang: torch loads slowly on a loaded machine
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{exited}: {output.read()}") from None
            time.sleep(0.1)
    process.terminate()
    raise TimeoutError(silent)
