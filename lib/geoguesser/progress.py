"""Progress of long loops: widgets in JupyterLab, plain lines in a headless run's log.

A headless run (`geoguesser run`) streams each notebook's printed lines to the terminal;
a bar redrawn with carriage returns or a widget would arrive there as noise, so under
`geoguesser run` (which sets GEOGUESSER_HEADLESS=1 for its kernels) and in the fit process
step 04 starts (launch.py; its output is streamed line by line) a loop reports a line at
every tenth of its length instead.

Step 04's fit runs as a child process and prints such lines; in JupyterLab the cell that
started it turns each loop's lines back into one live bar (`LineRelay`), while the fit's
epoch lines and anything else pass through as they come. The line's format is defined
once (`progress_line`, `PROGRESS_LINE`) for both ends.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

HEADLESS_ENV = "GEOGUESSER_HEADLESS"
T = TypeVar("T")


PROGRESS_LINE = re.compile(r"^(?P<desc>.+): (?P<done>\d+)/(?P<total>\d+) \(\d+%\) [\d.]+ s$")


def headless() -> bool:
    return os.environ.get(HEADLESS_ENV) == "1"


def progress_line(desc: str, done: int, total: int, elapsed: float) -> str:
    """`caching synthetic at 64px: 200/2000 (10%) 3.4 s`: what PROGRESS_LINE reads back."""
    return f"{desc}: {done}/{total} ({done / total:.0%}) {elapsed:.1f} s"


def _lines(items: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
    started = time.perf_counter()
    next_report = 0.1
    for done, item in enumerate(items, start=1):
        yield item
        if total and done / total >= next_report - 1e-9:
            elapsed = time.perf_counter() - started
            print(progress_line(desc, done, total, elapsed), flush=True)
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


class LineRelay:
    """Passes a child process's lines on, drawing its progress lines as one bar per loop.

    A loop's lines (same description) update one `tqdm.auto` bar, a widget in JupyterLab;
    every other line is handed to `say` as it comes. Headless, use `say` directly instead:
    the terminal keeps the plain lines.
    """

    def __init__(self, say=print, bar=None):
        from tqdm.auto import tqdm

        self.say, self.bar, self.bars = say, bar or tqdm, {}

    def __call__(self, line: str) -> None:
        match = PROGRESS_LINE.match(line)
        if match is None:
            self.say(line)
            return
        desc, done, total = match["desc"], int(match["done"]), int(match["total"])
        bar = self.bars.get(desc)
        if bar is None or bar.total != total:
            bar = self.bars[desc] = self.bar(total=total, desc=desc)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self.bars[desc]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
