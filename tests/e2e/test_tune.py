"""`geoguesser tune` end to end on tiny synthetic data: trials as runs, pruning, workers, a
killed worker's trial retried; each trial a tinycnn fit of one to five epochs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from geoguesser.config import load_settings
from geoguesser.workflow.study import default_storage
from helpers.configs import set_args, tiny_overrides
from helpers.processes import fit_processes, geoguesser

HANG_S = 1800  # a hang guard on a loaded 2-core machine (a trial took 5 min at load 10), not a pace


def tune_args(tmp_path: Path, tiny_data, space: str, trials: int, epochs: int) -> list[str]:
    data, cache = tiny_data
    overrides = [*tiny_overrides(data, cache, max_epochs=epochs, freeze_epochs=0), "maps.worst=1"]
    (tmp_path / "space.yaml").write_text(space)
    return ["tune", "--config", "configs/demo.yaml", "--space", str(tmp_path / "space.yaml"),
            "--trials", str(trials), "--study", "study", "--runs", str(tmp_path / "runs"),
            *set_args(overrides)]  # fmt: skip


def study_of(tmp_path: Path):
    storage = default_storage(tmp_path / "runs" / "study")
    return optuna.load_study(study_name="study", storage=storage)


def start(arguments: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "geoguesser.cli", *arguments], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_two_workers_share_one_sqlite_study_and_its_best_trial_reruns_as_a_plain_run(
    tmp_path, checkout, tiny_data
):
    space = "train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\npruner: {kind: none}\n"
    space += "sampler: {kind: random}\n"
    arguments = tune_args(tmp_path, tiny_data, space, trials=2, epochs=1)
    workers = [start([*arguments, "--worker", str(w)], checkout) for w in (0, 1)]
    outputs = [worker.communicate(timeout=HANG_S) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out[-2000:] + err[-2000:]
        assert out.count("== trial ") == 1, out  # one trial each: the budget is the study's
    trials = study_of(tmp_path).trials
    assert [t.number for t in trials] == [0, 1]
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert trials[0].params != trials[1].params  # the workers' samplers have their own seeds
    study_dir = tmp_path / "runs" / "study"
    assert sorted(p.name for p in study_dir.glob("trial-*")) == ["trial-000", "trial-001"]
    for trial in trials:  # each an ordinary, finished run scored by its validation split
        run_dir = study_dir / f"trial-{trial.number:03d}"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert trial.value == pytest.approx(metrics["val"]["mean_km"])
        recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert recorded["train"]["lr"] == trial.params["train.lr"]
    best = min(trials, key=lambda t: t.value)
    last = outputs[0][0] if "the best trial's settings" in outputs[0][0] else outputs[1][0]
    assert "2 trials: 2 complete, 0 pruned (saving 0 of 2 epochs), 0 failed" in last
    assert f"geoguesser run --config {study_dir / 'best.yaml'} --runs {tmp_path / 'runs'}" in last
    rerun = load_settings(study_dir / "best.yaml")
    assert rerun.name == "study-best" and rerun.train.lr == best.params["train.lr"]
    assert (study_dir / "summary.txt").read_text().splitlines()[-1].startswith("2 trials")

    compared = geoguesser("compare", study_dir / "trial-*", cwd=checkout)
    assert compared.returncode == 0 and "train.lr" in compared.stdout, compared.stderr
    import papermill

    from geoguesser.workflow.pipeline import ensure_kernel

    papermill.execute_notebook(
        str(checkout / "notebooks" / "07-study.ipynb"), str(tmp_path / "07.ipynb"),
        parameters={"study_dir": str(study_dir), "out_dir": str(tmp_path / "figures")},
        kernel_name=ensure_kernel(), cwd=str(checkout), progress_bar=False,
    )  # fmt: skip
    for name in ["history.png", "epochs.png"]:
        assert (tmp_path / "figures" / name).stat().st_size > 1000
    again = geoguesser(*arguments, cwd=checkout, timeout=HANG_S)  # the budget is spent
    assert again.returncode == 0 and "== trial" not in again.stdout
    assert len(study_of(tmp_path).trials) == 2


def test_a_trial_that_lags_is_pruned_and_its_run_still_finishes(tmp_path, checkout, tiny_data):
    space = "train.lr: [0.003]\npruner: {kind: median, n_startup_trials: 1, n_warmup_steps: 0}\n"
    arguments = tune_args(tmp_path, tiny_data, space, trials=2, epochs=3)
    study_dir = tmp_path / "runs" / "study"
    study_dir.mkdir(parents=True)
    # The lag, forced: a finished trial on record that scored 1 km after every epoch.
    study = optuna.create_study(study_name="study", storage=default_storage(study_dir))
    study.add_trial(
        optuna.trial.create_trial(
            params={"train.lr": 0.003},
            distributions={"train.lr": optuna.distributions.CategoricalDistribution([0.003])},
            value=1.0, intermediate_values={1: 1.0, 2: 1.0, 3: 1.0},
            user_attrs={"max_epochs": 3},
        )
    )  # fmt: skip
    result = geoguesser(*arguments, cwd=checkout, timeout=HANG_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no trial of this study has completed a run: no best settings" in result.stdout
    _, pruned = study_of(tmp_path).trials
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["pruned_after_epoch"] == 1
    assert list(pruned.intermediate_values) == [1]
    assert pruned.value == pruned.intermediate_values[1] > 1.0
    assert "pruned by the study after epoch 1: val/mean_km" in result.stdout
    run_dir = study_dir / "trial-001"
    assert (run_dir / "metrics.json").is_file()  # a finished run, marked pruned
    assert json.loads((run_dir / "training.json").read_text())["epochs"] == 1
    assert "2 trials: 1 complete, 1 pruned (saving 2 of 6 epochs), 0 failed" in result.stdout


EPOCHS = 5  # three epochs left when the worker is killed: its checkpoint is of an unfinished fit


def test_a_killed_workers_trial_is_failed_then_retried_in_its_own_folder(
    tmp_path, checkout, tiny_data
):
    space = "train.lr: [0.003]\npruner: {kind: none}\nheartbeat: {interval_s: 1, grace_s: 3}\n"
    arguments = tune_args(tmp_path, tiny_data, space, trials=1, epochs=EPOCHS)
    run_dir = tmp_path / "runs" / "study" / "trial-000"
    worker = start(arguments, checkout)
    seen = []
    for line in worker.stdout:  # epoch 1's checkpoint is on disk once epoch 2 has ended
        seen.append(line)
        if line.startswith(f"epoch 2/{EPOCHS}"):
            break
    for pid in fit_processes(run_dir):  # frozen where it is: the worker's death reaches the
        os.kill(pid, signal.SIGSTOP)  # fit a moment later, and a fast fit could finish first
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=60)
    deadline = time.monotonic() + 60
    while fit_processes(run_dir) and time.monotonic() < deadline:  # the fit dies with it
        time.sleep(0.5)
    assert not fit_processes(run_dir), "".join(seen)
    last = run_dir / "checkpoints" / "last.ckpt"
    epochs_done = torch.load(last, map_location="cpu", weights_only=True)["epoch"] + 1
    assert 1 <= epochs_done < EPOCHS, "".join(seen)
    time.sleep(4)  # past the grace period: the dead worker's trial is stale

    result = geoguesser(*arguments, cwd=checkout, timeout=HANG_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    killed, retry = study_of(tmp_path).trials
    assert (killed.state.name, retry.state.name) == ("FAIL", "COMPLETE")
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(retry) == [0]
    assert retry.params == killed.params and 1 in retry.intermediate_values  # inherited epochs
    assert "continuing trial-000 from 04-training" in result.stdout
    assert f"resuming the fit after epoch {epochs_done} from " in result.stdout
    assert (run_dir / "metrics.json").is_file()
    assert not (tmp_path / "runs" / "study" / "trial-001").exists()


def test_the_slurm_script_starts_one_worker_per_array_task(tmp_path):
    # The one-node cluster (test_slurm.py) costs minutes; this runs the script as sbatch
    # would on array task 3, with a stand-in geoguesser that records its arguments.
    from helpers.paths import REPO

    stand_in = tmp_path / ".venv" / "bin" / "geoguesser"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text('#!/bin/bash\necho "$@"\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_ARRAY_TASK_ID": "3"}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm-tune.sbatch"), "configs/lumen.yaml", "--space",
         "space.yaml", "--trials", "40"], env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split() == [
        "tune", "--config", "configs/lumen.yaml", "--worker", "3", "--space", "space.yaml",
        "--trials", "40",
    ]  # fmt: skip
