"""Progress of long loops: widgets in JupyterLab, plain lines in a headless run's log.

A headless run (`geoguesser run`) streams each notebook's printed lines to the terminal;
a bar redrawn with carriage returns or a widget would arrive there as noise, so under
`geoguesser run` (which sets GEOGUESSER_HEADLESS=1 for its kernels) and in the fit process
step 04 starts (launch.py; its output is streamed line by line) a loop reports a line at
every tenth of its length instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

HEADLESS_ENV = "GEOGUESSER_HEADLESS"
T = TypeVar("T")


def headless() -> bool:
    return os.environ.get(HEADLESS_ENV) == "1"


def _lines(items: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
    started = time.perf_counter()
    next_report = 0.1
    for done, item in enumerate(items, start=1):
        yield item
        if total and done / total >= next_report - 1e-9:
            elapsed = time.perf_counter() - started
            print(f"{desc}: {done}/{total} ({done / total:.0%}) {elapsed:.1f} s", flush=True)
            next_report = (int(done / total * 10) + 1) / 10


def progress(
    items: Iterable[T], total: int | None = None, desc: str = "", enabled: bool = True
) -> Iterable[T]:
    """`items`, reporting how far the loop has got."""
    if not enabled:
        return items
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    if headless():
        return _lines(items, total, desc)
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=desc)
