"""A one-node SLURM cluster on this machine, for the tests of `scripts/slurm-*.sbatch`.

Debian's `slurm-wlm` and `munge`, started as root (as CI runs), and private to the fixture:
its own munge key and socket, its own `slurm.conf`, ports, state and logs in a temporary
folder, so nothing of the machine's own set-up is read or changed and two test sessions
never meet. The node is this machine as `slurmd -C` describes it (its real CPUs and
memory); no cgroups, no GPUs, no accounting (`scontrol` and the jobs' own files say how
jobs ended). Without root or the programs the tests skip, except under CI=true, where a
cluster that cannot start fails them: `.ci/run` installs the packages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.browser import require_program

PROGRAMS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "srun"]
PARTITION = "test"
START_S = 120  # for the daemons to come up and the node to be idle
DAEMONS = ["slurmd", "slurmctld", "munged"]  # stopped in this order
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "PREEMPTED", "BOOT_FAIL", "DEADLINE"}  # fmt: skip


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"one-node SLURM cluster: {reason} (under CI=true this fails)")
    pytest.skip(f"one-node SLURM cluster: {reason}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_line() -> str:
    """This machine as a NodeName line, from `slurmd -C` (its CPUs, cores and memory)."""
    described = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True)
    line = next(line for line in described.stdout.splitlines() if line.startswith("NodeName="))
    fields = [field for field in line.split() if not field.startswith("UpTime=")]
    return " ".join([*fields, "NodeAddr=127.0.0.1", "State=UNKNOWN"])


def slurm_conf(root: Path, node: str) -> str:
    name = node.split()[0].removeprefix("NodeName=")
    controller_port = _free_port()
    # Lightning's rendezvous port for a SLURM job is 15000 + the job id's last four digits:
    # two clusters of two test sessions at once both numbering from 1 gave their first jobs
    # one port, and one fit's ranks met the other's (srun: Force Terminated). The job ids
    # start from the controller's port instead, which no other live cluster here holds.
    first_job_id = controller_port % 10000 or 10000
    return f"""\
ClusterName=geoguesser-test
SlurmctldHost={name}(127.0.0.1)
SlurmctldPort={controller_port}
FirstJobId={first_job_id}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
{node}
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class Cluster:
    root: Path
    conf: Path
    node: str

    def env(self) -> dict[str, str]:
        """The submitting environment: this one, pointed at the cluster, no outer job's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        return {**env, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            list(args), cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def sbatch(self, *args: str, cwd: Path) -> str:
        """Submit from `cwd` (the scripts run where they were submitted); the job id."""
        return self.command("sbatch", "--parsable", *args, cwd=cwd).strip().split(";")[0]

    def wait(self, timeout_s: float) -> None:
        """Until no job is pending or running; a hang is cancelled and reported."""
        deadline = time.monotonic() + timeout_s
        while self.command("squeue", "--noheader", "--format=%i").strip():
            if time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"jobs still queued or running after {timeout_s:.0f} s")
            time.sleep(2)

    def cancel(self) -> None:
        """Cancel every job of the cluster and wait (a minute at most) until they are gone."""
        self.command("scancel", "--full", f"--partition={PARTITION}")
        for _ in range(60):
            if not self.command("squeue", "--noheader", "--format=%i").strip():
                return
            time.sleep(1)

    def states(self, job_id: str) -> list[dict[str, str]]:
        """Every task of job `job_id` (one, or one per array task) as scontrol's fields."""
        records = self.command("scontrol", "--oneliner", "show", "job", job_id).splitlines()
        return [dict(f.split("=", 1) for f in r.split() if "=" in f) for r in records if r]


def _start(root: Path) -> Cluster:
    """munged, slurmctld and slurmd on the private configuration; the node idle."""
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    subprocess.run(
        ["munged", "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
         f"--log-file={root}/munged.log", f"--pid-file={root}/munged.pid",
         f"--seed-file={root}/munged.seed"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    node = node_line()
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, node))
    cluster = Cluster(root, conf, node.split()[0].removeprefix("NodeName="))
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=cluster.env(), timeout=60)
    subprocess.run(
        ["slurmd", "-f", str(conf), "-N", cluster.node], check=True, env=cluster.env(), timeout=60
    )
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        try:
            state = cluster.command("sinfo", "--noheader", "--format=%T", "-n", cluster.node)
        except RuntimeError:
            state = ""
        if state.strip() == "idle":
            return cluster
        time.sleep(1)
    raise RuntimeError(f"the node never became idle (last state {state.strip()!r})")


def _stop(root: Path) -> None:
    """End the daemons (by their pid files) and wait for them."""
    for daemon in DAEMONS:
        try:
            pid = int((root / f"{daemon}.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)


def _log_tails(root: Path) -> str:
    tails = []
    for log in ("munged.log", "slurmctld.log", "slurmd.log"):
        path = root / log
        if path.is_file():
            tails.append(f"--- {log}\n" + "\n".join(path.read_text().splitlines()[-8:]))
    return "\n".join(tails)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster (see the module's docstring), stopped after the session."""
    for program in PROGRAMS:
        require_program(program, "a one-node SLURM cluster")
    if os.geteuid() != 0:
        _unavailable("its daemons are started as root, and this is not root")
    # Short: the munge socket's path must fit a Unix socket address (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="geoguesser-slurm-"))
    try:
        cluster = _start(root)
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        tails = _log_tails(root)
        _stop(root)
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"could not start: {error}\n{tails}")
    try:
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):
            cluster.cancel()  # what a failed test left running
        _stop(root)
        shutil.rmtree(root, ignore_errors=True)
