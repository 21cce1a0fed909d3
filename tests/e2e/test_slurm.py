"""The cluster scripts under a real SLURM: a one-node cluster started here (slurm_cluster.py).

As a cluster user submits them, from the checkout with its `.venv`, keeping the scripts'
GPU defaults and overriding them on the `sbatch` line for this CPU-only node:
`scripts/slurm-run.sbatch` with two tasks (step 04 starts the fit with srun, two processes)
and `scripts/slurm-sweep.sbatch` as a two-task array, both queued at once. The members must
end with the metrics they have when run one after another without SLURM (`pair_alone`).
"""

from __future__ import annotations

import json

import pytest

from helpers.browser import require_program
from helpers.configs import set_args, tiny_overrides
from helpers.paths import REPO
from helpers.slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)
from helpers.sweeps import pair_arguments, pair_metrics

WAIT_S = 1800  # a hang guard for both jobs on two CPUs, not a speed requirement
CPU_TASKS = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1"]
ARRAY = ["--array=0-1", "--gpus=0", "--cpus-per-task=1"]


@pytest.fixture(scope="module")
def jobs(slurm_cluster, tiny_data, tmp_path_factory):  # noqa: F811
    """Both scripts submitted together, waited for: (cluster, root, run job, array job)."""
    require_program(str(REPO / ".venv" / "bin" / "geoguesser"), "the checkout's .venv")
    data, _ = tiny_data
    root = tmp_path_factory.mktemp("slurm-jobs")
    overrides = [*tiny_overrides(data, root / "cache"), "name=two", "train.accelerator=cpu"]
    overrides.append("maps.worst=1")
    run_job = slurm_cluster.sbatch(
        f"--chdir={REPO}", f"--output={root}/run-%j.out", *CPU_TASKS,
        "scripts/slurm-run.sbatch", "configs/demo.yaml", "--runs", str(root / "runs"),
        *set_args(overrides), cwd=REPO,
    )  # fmt: skip
    array_job = slurm_cluster.sbatch(
        f"--chdir={REPO}", f"--output={root}/sweep-%A-%a.out", *ARRAY,
        "scripts/slurm-sweep.sbatch", "configs/demo.yaml",
        *pair_arguments(data, root / "cache", root / "runs"), cwd=REPO,
    )  # fmt: skip
    slurm_cluster.wait(WAIT_S)
    return slurm_cluster, root, run_job, array_job


def _outputs(root, pattern: str) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(root.glob(pattern)))


def test_the_run_script_runs_every_step_and_fits_with_two_srun_processes(jobs):
    cluster, root, run_job, _ = jobs
    (state,) = cluster.states(run_job)
    output = _outputs(root, "run-*.out")
    run_dir = root / "runs" / "two"
    train_log = run_dir / "train.log"  # the fit's own output: where a failed fit says why
    tail = train_log.read_text()[-3000:] if train_log.is_file() else "(no train.log)"
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), f"{output}\n{tail}"
    assert (run_dir / "metrics.json").is_file()
    assert "run finished: " in output and "result: test mean" in output
    recorded = json.loads((run_dir / "training.json").read_text())
    assert recorded["processes"] == 2
    # Lightning's own lines: two ranks, in SLURM's environment (srun's tasks).
    log = train_log.read_text()
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log, log[-2000:]
    assert "SLURM auto-requeueing enabled" in log, log[-2000:]


def test_the_sweep_script_as_an_array_ends_as_the_members_run_one_after_another(jobs, pair_alone):
    cluster, root, _, array_job = jobs
    states = cluster.states(array_job)
    output = _outputs(root, "sweep-*.out")
    assert sorted(s["ArrayTaskId"] for s in states) == ["0", "1"], output
    assert {(s["JobState"], s["ExitCode"]) for s in states} == {("COMPLETED", "0:0")}, output
    assert pair_metrics(root / "runs" / "pair") == pair_alone
    summary = (root / "runs" / "pair" / "summary.txt").read_text().splitlines()
    assert [row.split()[2] for row in summary[1:]] == ["finished", "finished"]
