"""The fit as a process of its own: step 04 starts `geoguesser train --run-dir R` and waits.

Lightning's script-style DDP re-runs the command that started it once per device, which a
notebook kernel cannot be; a child process can, and it is the same command that torchrun
and srun start on a cluster, so one code path serves one CPU, one GPU, several GPUs and
several nodes. The child's standard output (one line per epoch, progress lines) is
streamed line by line to the caller, a notebook cell or, through papermill, the terminal;
its standard error goes to `R/train.log`. A failed child becomes one line (`FitFailed`),
and an interrupted caller (Ctrl-C, a kernel interrupt) stops the child's whole process
group before the interrupt goes on (`stop`); the child dies with its parent in any case (see
`die_with_parent`), so no fit outlives the notebook that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from geoguesser.config import Settings
from geoguesser.errors import UserError
from geoguesser.progress import HEADLESS_ENV, LineRelay, headless

PARENT_ENV = "GEOGUESSER_FIT_PARENT"  # set for the child: it must not outlive its parent
LOG_NAME = "train.log"
STOP_GRACE_S = 10.0  # for srun, between SIGTERM (forwarded to every task) and SIGKILL
PR_SET_PDEATHSIG = 1


class FitFailed(Exception):
    """The fit process failed; the message is its own last words, in one line."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"FitFailed: {self}"]


def in_slurm_job() -> bool:
    """Inside a SLURM batch job, as Lightning sees it: its ranks must then come from srun."""
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
        "bash",
        "interactive",
    )


def fit_command(settings: Settings, run_dir: Path) -> list[str]:
    """The command line of the fit; several nodes need srun, which starts every rank."""
    command = [sys.executable, "-m", "geoguesser.cli", "train", "--run-dir", str(run_dir)]
    if in_slurm_job():
        return ["srun", "--kill-on-bad-exit=1", *command]
    if settings.train.num_nodes > 1:
        raise UserError(
            f"train.num_nodes {settings.train.num_nodes}: a run starts a fit on several nodes "
            "only inside a SLURM job (with srun); elsewhere start geoguesser train on each "
            "node with torchrun (docs/gpu.md, Several GPUs and nodes)"
        )
    return command


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere).

    The checkpoints are written atomically and resume is exact, so a hard stop loses only
    the unfinished epoch. Each rank Lightning starts runs this too, tied to rank 0.
    """
    if PARENT_ENV not in os.environ or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the request was made
        os._exit(1)


def stop(process: subprocess.Popen, graceful: bool) -> None:
    """Stop the child and every process it started (they share its process group).

    Locally, SIGKILL at once: on SIGTERM Lightning's rank 0 kills the ranks it started and
    then waits for them in its next collective, so a grace period only adds delay (measured:
    none of them had exited 10 s later). srun gets SIGTERM first, which it forwards to
    every task on every node, and SIGKILL only if it has not ended after the grace period.
    """
    if graceful:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError):  # the child if still there, and its ranks
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def last_words(log: Path, start: int, code: int) -> str:
    """One line saying why the fit failed: its own error lines, else its last line."""
    with open(log, errors="replace") as handle:
        handle.seek(start)
        lines = [line.rstrip() for line in handle if line.strip()]
    ours = [line for line in lines if line.startswith("geoguesser train: ")]
    if ours:
        return "; ".join(line.removeprefix("geoguesser train: ") for line in ours)
    if code < 0:
        return f"killed by {signal.Signals(-code).name} (out of memory?); see {log}"
    last = lines[-1] if lines else f"exit status {code}"
    return f"{last} (the whole error is in {log})"


def launch_fit(
    settings: Settings, run_dir: str | Path, say: Callable[[str], None] | None = None
) -> None:
    """Run `geoguesser train --run-dir R` and stream its lines to `say`; FitFailed if it fails.

    The run's `config.yaml` holds the settings the child reads (the notebook recorded them).
    By default its lines are printed; in JupyterLab (not headless) each loop's progress
    lines become one live bar instead (`progress.LineRelay`), the epoch lines stay lines.
    """
    relay = None
    if say is None:
        relay = None if headless() else LineRelay()
        say = relay or print
    run_dir = Path(run_dir).absolute()
    command = fit_command(settings, run_dir)
    log = run_dir / LOG_NAME
    env = {**os.environ, HEADLESS_ENV: "1", PARENT_ENV: str(os.getpid())}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "a") as err:
        start = err.tell()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,  # its own group: stopped as a whole, never by stray signals
        )
        try:
            for line in process.stdout:
                say(line.rstrip("\n"))
            code = process.wait()
        except BaseException:  # KeyboardInterrupt (Ctrl-C, kernel interrupt) or any other
            stop(process, graceful=command[0] == "srun")
            raise
        finally:
            if relay is not None:
                relay.close()
    if code != 0:
        raise FitFailed(last_words(log, start, code))
