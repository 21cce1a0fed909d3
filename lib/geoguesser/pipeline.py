"""The headless runner: execute the numbered notebooks of a checkout in order with papermill.

The notebooks come from the checkout the user stands in (or `--notebooks DIR`), never from
wherever the package happens to be installed, so two clones sharing one environment each run
their own notebooks into their own runs. Each notebook receives only the run folder and the
run's own `config.yaml` (absolute paths throughout) and resolves its settings from it. The
notebooks' printed lines stream to the terminal as they come: per-epoch lines while
training, progress lines of long loops, and each step's timing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .config import Settings
from .errors import UserError
from .progress import HEADLESS_ENV
from .runs import (
    CONFIG_NAME,
    STEPS,
    find_checkout,
    first_unfinished,
    mark_completed,
    prepare,
    record_invocation,
    run_folder,
    step_index,
)

KERNEL_NAME = "geoguesser"
# The kernel's own log goes to this terminal: a warning at every start that its loopback TCP
# link is unencrypted (papermill's kernels listen on 127.0.0.1 only), and after Ctrl-C a ZMQ
# traceback as the kernel is shut down. Neither tells a user anything; what a notebook
# prints, warnings and errors included, still comes through papermill.
QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]


class StepFailed(Exception):
    """A notebook raised: the message names the step, the cell and the partial output."""


class Interrupted(Exception):
    """Ctrl-C during a run: the run folder is left as it is, ready to continue at `step`."""

    def __init__(self, step: str):
        if step == STEPS[0]:  # `--from 01` is refused: the first step starts the folder afresh
            super().__init__("interrupted; start again with --overwrite")
        else:
            super().__init__(f"interrupted; continue with --from {step[:2]}")
        self.step = step


def notebooks_of(notebook_dir: str | Path | None) -> Path:
    """The notebooks to run: `notebook_dir`, or those of the checkout holding the cwd."""
    if notebook_dir is None:
        checkout = find_checkout(Path.cwd())
        if checkout is None:
            raise UserError(
                f"{Path.cwd()}: not inside a geoguesser checkout; run from your clone, "
                "or pass --notebooks DIR"
            )
        return checkout / "notebooks"
    folder = Path(notebook_dir).absolute()
    missing = [step for step in STEPS if not (folder / f"{step}.ipynb").is_file()]
    if missing:
        raise UserError(f"{folder}: no {missing[0]}.ipynb; --notebooks needs all five steps")
    return folder


def ensure_kernel() -> str:
    """Register this interpreter as the Jupyter kernel `geoguesser` inside its own prefix."""
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (geoguesser)", prefix=sys.prefix)
    return KERNEL_NAME


@contextlib.contextmanager
def _headless_kernels():
    """Kernels started inside inherit this: they report progress as lines (see progress.py)."""
    before = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = before


class _CtrlC:
    pressed = False


@contextlib.contextmanager
def _noting_ctrl_c():
    """Remember a Ctrl-C (then raise KeyboardInterrupt as usual), so that an interrupt that
    reaches us dressed as another exception is still reported as an interrupt."""
    noted = _CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum, frame):
        noted.pressed = True
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    quiet = _AfterCtrlC(noted)
    for name in ABANDONED_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)
        if not noted.pressed:  # pressed, they stay: the abandoned tasks may speak at exit
            for name in ABANDONED_LOGGERS:
                logging.getLogger(name).removeFilter(quiet)


# Ctrl-C raises KeyboardInterrupt wherever the kernel client's event loop is; its tasks still
# waiting on the kernel are abandoned, and when papermill then shuts the kernel down they
# fail (DeadKernelError) with nobody to hear it: asyncio logs each as a traceback ("Task
# exception was never retrieved"), papermill's client logs "Kernel died", sometimes only
# at exit, after the one line that matters. Once Ctrl-C was pressed, those records go.
ABANDONED_LOGGERS = ("asyncio", "papermill")


class _AfterCtrlC(logging.Filter):
    def __init__(self, noted: _CtrlC):
        super().__init__()
        self.noted = noted

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.noted.pressed


def run(
    settings: Settings,
    runs_root: str | Path = "runs",
    overwrite: bool = False,
    start_from: str | None = None,
    notebook_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple = (),
    stream: bool = True,
    stop_after: str | None = None,
) -> Path:
    """Execute the steps into `runs_root/<settings.name>`; returns the run folder.

    `settings` have passed their checks; the run folder is only touched after that, and
    after the notebooks to run were found.
    """
    import papermill

    notebooks = notebooks_of(notebook_dir)
    run_dir = run_folder(runs_root, settings.name)
    first = step_index(start_from)
    last = len(STEPS) - 1 if stop_after is None else step_index(stop_after, "--to")
    if last < first:
        raise UserError(f"--to {stop_after}: comes before the first step to run, {STEPS[first]}")
    prepare(run_dir, first, overwrite)
    steps = STEPS[first : last + 1]
    record_invocation(
        run_dir, settings, steps, config_file, list(overrides), find_checkout(notebooks)
    )
    try:
        _run_steps(papermill, notebooks, run_dir, steps, first, stream)
    except KeyboardInterrupt:  # between steps, or before the first: the run goes on from there
        raise Interrupted(first_unfinished(run_dir) or steps[-1]) from None
    return run_dir


def _run_steps(papermill, notebooks: Path, run_dir: Path, steps, first: int, stream: bool):
    """Execute `steps` in order, marking each one done in the run folder as it ends."""
    kernel = ensure_kernel()
    parameters = {"run_dir": str(run_dir), "config": str(run_dir / CONFIG_NAME), "overrides": []}
    out = sys.stdout if stream else None
    done = STEPS[:first]
    with _headless_kernels(), _noting_ctrl_c() as ctrl_c:
        for number, step in enumerate(steps, start=first + 1):
            output = run_dir / f"{step}.ipynb"
            if stream:
                print(f"[{number}/{len(STEPS)}] {step}", flush=True)
            started = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(notebooks / f"{step}.ipynb"),
                    str(output),
                    parameters=parameters,
                    kernel_name=kernel,
                    cwd=str(notebooks),
                    progress_bar=False,
                    stdout_file=out,
                    extra_arguments=QUIET_KERNEL,
                )
            except KeyboardInterrupt:
                raise Interrupted(step) from None
            except papermill.PapermillExecutionError as exc:
                if exc.ename == "KeyboardInterrupt" or ctrl_c.pressed:
                    raise Interrupted(step) from None
                reason = str(exc.evalue).splitlines()[0] if exc.evalue else ""
                raise StepFailed(
                    f"step {step} failed in cell {exc.exec_count}: {exc.ename}: {reason}"
                    f"; the partial notebook is {output}"
                ) from None
            except Exception:
                # Ctrl-C can surface from inside the kernel client's event loop as another error.
                if ctrl_c.pressed:
                    raise Interrupted(step) from None
                raise
            done.append(step)
            mark_completed(run_dir, done)
            if stream:
                seconds = time.perf_counter() - started
                print(f"[{number}/{len(STEPS)}] {step} done in {seconds:.1f} s", flush=True)
