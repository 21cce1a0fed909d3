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
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from geoguesser.config import Settings
from geoguesser.errors import UserError
from geoguesser.progress import HEADLESS_ENV
from geoguesser.workflow.runs import (
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
DISPLAY_NAME = "Python (geoguesser)"
# The kernel's own log goes to this terminal: a warning at every start that its local link
# is unencrypted (papermill's kernels listen on this machine only), and after Ctrl-C a ZMQ
# traceback as the kernel is shut down. Neither tells a user anything; what a notebook
# prints, warnings and errors included, still comes through papermill.
QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]
# A step's input history is of no use, and IPython's history database is one file in the
# user's home that every kernel of every run at once would write.
NO_HISTORY = ["--HistoryManager.enabled=False"]
# ipykernel can log a traceback to its stderr as it exits after a step has finished: its
# control channel answers after its IO sockets closed (ZMQError "Socket operation on
# non-socket", through tornado's logger). That is the kernel's own shutdown, never the run's:
# errors of the notebook's cells reach the run through the notebook, not through this logger.
# Set at the kernel's start with no name bound in the notebook's namespace.
_SILENCE_TORNADO = "__import__('logging').getLogger('tornado.general').setLevel(99)"
QUIET_KERNEL_EXIT = [f"--IPKernelApp.exec_lines={_SILENCE_TORNADO}"]


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
    """Register this interpreter as the Jupyter kernel `geoguesser` inside its own prefix.

    Many runs start at once on one environment (array tasks, tuning workers, two users), so
    the spec is never removed or half-written where Jupyter looks for it: ipykernel writes
    it into a private staging folder beside the target; the staged folder is renamed into
    place when there is none yet, an existing spec that is the same is left alone, and one
    that differs gets the staged files renamed over its own, one by one. Losing a race to
    another run is harmless: what it put there is the same spec.
    """
    from ipykernel.kernelspec import install

    target = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{KERNEL_NAME}-", dir=target.parent))
    try:
        staged = Path(
            install(kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME, prefix=str(staging))
        )
        if _same_spec(target, staged):
            return KERNEL_NAME
        try:
            staged.rename(target)  # a folder renames only onto nothing (or an empty folder)
        except OSError:  # another run's spec is there: replace its files, each atomically
            if not _same_spec(target, staged):
                for file in staged.iterdir():
                    file.replace(target / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return KERNEL_NAME


def _same_spec(target: Path, staged: Path) -> bool:
    """Whether `target` holds the spec staged at `staged`: its kernel.json and every file."""
    try:
        same = json.loads((target / "kernel.json").read_text()) == json.loads(
            (staged / "kernel.json").read_text()
        )
    except (OSError, ValueError):
        return False
    return same and all((target / file.name).is_file() for file in staged.iterdir())


def _kernel_manager() -> dict:
    """papermill's keyword for the kernel manager of a step (see `_private_sockets`)."""
    manager = _private_sockets()
    return {} if manager is None else {"kernel_manager_class": manager}


@functools.cache
def _private_sockets() -> type | None:
    """A kernel manager whose kernel talks over Unix sockets in a folder of its own.

    Jupyter's default picks free TCP ports, releases them, and the kernel binds them a
    moment later: a kernel of another run started at the same moment can take one in
    between and die at start. Sockets in a private temporary folder have no shared
    namespace to collide in (and no port is opened). Windows has no such sockets: None,
    the default manager.
    """
    if sys.platform == "win32":
        return None
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class PrivateSocketsKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:  # the sockets are this path followed by -1 .. -5
            self._socket_dir = tempfile.mkdtemp(prefix="geoguesser-kernel-")
            return os.path.join(self._socket_dir, "kernel")

        def cleanup_ipc_files(self) -> None:
            super().cleanup_ipc_files()
            if getattr(self, "_socket_dir", None):
                shutil.rmtree(self._socket_dir, ignore_errors=True)

    return PrivateSocketsKernelManager


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
    notebooks = notebooks_of(notebook_dir)
    run_dir = run_folder(runs_root, settings.name)
    first = step_index(start_from)
    last = len(STEPS) - 1 if stop_after is None else step_index(stop_after, "--to")
    if last < first:
        raise UserError(f"--to {stop_after}: comes before the first step to run, {STEPS[first]}")
    steps = STEPS[first : last + 1]
    with prepare(run_dir, first, overwrite):  # held by this run alone until it ends
        record_invocation(
            run_dir, settings, steps, config_file, list(overrides), find_checkout(notebooks)
        )
        try:
            _run_steps(notebooks, run_dir, steps, first, stream)
        except KeyboardInterrupt:  # between steps, or before the first: it goes on from there
            raise Interrupted(first_unfinished(run_dir) or steps[-1]) from None
    return run_dir


def _run_steps(notebooks: Path, run_dir: Path, steps: list[str], first: int, stream: bool):
    """Execute `steps` in order, marking each one done in the run folder as it ends."""
    import papermill

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
                    extra_arguments=[*QUIET_KERNEL, *NO_HISTORY, *QUIET_KERNEL_EXIT],
                    **_kernel_manager(),
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
