"""Two training processes on the CPU (DDP over gloo), as docs/gpu.md tells users to run them.

The demo-sized tiny data goes through `geoguesser run` with `devices: 2`, `strategy: ddp`
and a frozen phase; the fit is the child process `geoguesser train`, which Lightning runs
once more for rank 1. Validation and test must count each location once (the split sizes
here are odd, so a padding sampler would repeat one); a fit killed with SIGKILL resumes
to the same numbers as the uninterrupted one.
"""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from geoguesser.config import load_settings
from geoguesser.workflow.launch import launch_fit
from geoguesser.workflow.runs import STEPS, completed_steps, mark_completed
from helpers.configs import set_args, tiny_overrides
from helpers.paths import HELPERS
from helpers.processes import fit_processes, geoguesser

TWO_PROCESSES = ["train.devices=2", "train.strategy=ddp", "train.accelerator=cpu"]
# 80 locations: 61 train, 9 val, 10 test; 9 shards unevenly over two processes.
SPLIT = ["split.fractions=[0.7625, 0.1125, 0.125]"]


@pytest.fixture(scope="module")
def ddp_run(tiny_data, checkout):
    data, cache = tiny_data
    overrides = [*tiny_overrides(data, cache, max_epochs=3), *TWO_PROCESSES, *SPLIT]
    overrides.append("name=ddp")
    result = geoguesser("run", "--config", "configs/demo.yaml", *set_args(overrides), cwd=checkout)
    assert result.returncode == 0, result.stderr
    return checkout / "runs" / "ddp", result


def test_two_processes_train_through_a_run_with_a_frozen_phase(ddp_run):
    run_dir, result = ddp_run
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    summary = json.loads((run_dir / "training.json").read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 3
    assert (run_dir / "metrics.json").is_file() and not fit_processes(run_dir)
    assert "Traceback" not in result.stderr


def test_validation_test_and_predictions_count_each_location_once(ddp_run):
    run_dir, _ = ddp_run
    table = pd.read_csv(run_dir / "enriched.csv", dtype={"uuid": str})
    sizes = table.split.value_counts()
    assert sizes["val"] % 2 == 1 or sizes["test"] % 2 == 1  # a padded shard would repeat one
    summary = json.loads((run_dir / "training.json").read_text())
    assert summary["val"]["val/n"] == sizes["val"] and summary["test"]["test/n"] == sizes["test"]
    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"uuid": str})
    held_out = table[table.split.isin(["val", "test"])]
    assert predictions.uuid.is_unique and set(predictions.uuid) == set(held_out.uuid)
    # The test metrics of the two processes are those of the best checkpoint's predictions,
    # made in one process: the same locations, each once. Batches of another make-up give
    # float32 outputs that differ in the last digits (3e-6 relative seen on one machine); a
    # location missed or counted twice would move the mean by about 1/n, far above 1e-4.
    test = predictions[predictions.split == "test"]
    assert summary["test"]["test/mean_km"] == pytest.approx(test.error_km.mean(), rel=1e-4)
    assert summary["test"]["test/median_km"] == pytest.approx(test.error_km.median(), rel=1e-4)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == sizes["test"]


def test_a_killed_two_process_fit_resumes_to_the_uninterrupted_result(ddp_run, tmp_path):
    run_dir, _ = ddp_run
    copy = tmp_path / "ddp"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "tb", "*.ipynb"))
    (copy / "training.json").unlink()
    job = [sys.executable, str(HELPERS / "ddp_fit_job.py"), str(copy)]
    # Killed in the second epoch, after its first batch: both processes, at once.
    killed = subprocess.run([*job, "1", "0"], capture_output=True, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL and not (copy / "training.json").exists()
    assert not fit_processes(copy)
    resumed = geoguesser("train", "--run-dir", copy, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the fit after epoch 1 from " in resumed.stdout
    assert [
        line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch ")
    ] == [
        "2/3",
        "3/3",
    ]
    again = json.loads((copy / "training.json").read_text())
    first = json.loads((run_dir / "training.json").read_text())
    assert again["val"] == first["val"]
    assert again["test"] == first["test"]


def test_torchrun_starts_the_same_fit_as_the_run(ddp_run, tmp_path):
    # docs/gpu.md's cluster recipe on one machine: the run prepared, torchrun starts the fit.
    run_dir, _ = ddp_run
    copy = tmp_path / "ddp"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "tb", "*.ipynb"))
    (copy / "training.json").unlink()
    mark_completed(copy, STEPS[:3])  # prepared with `geoguesser run --to 03`
    torchrun = Path(sys.executable).parent / "torchrun"
    fit = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "geoguesser.cli", "train",
         "--run-dir", str(copy)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    again = json.loads((copy / "training.json").read_text())
    first = json.loads((run_dir / "training.json").read_text())
    assert again["val"] == first["val"] and again["test"] == first["test"]
    assert completed_steps(copy) == STEPS[:4]  # a fit by hand is step 04: --from 05 follows


def test_a_fit_that_step_04_launched_leaves_the_step_to_its_notebook(ddp_run, tmp_path):
    # Step 04 is done once its notebook has drawn its figures too: a kernel stopped between
    # the fit and the figures must leave the step to run again (it resumes the fit as done).
    run_dir, _ = ddp_run
    copy = tmp_path / "single"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "tb", "*.ipynb"))
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["train"].update(devices=1, strategy="auto", max_epochs=1, freeze_epochs=0)
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    mark_completed(copy, STEPS[:3])
    launch_fit(load_settings(copy / "config.yaml"), copy, lambda line: None)
    assert (copy / "training.json").is_file()
    assert completed_steps(copy) == STEPS[:3]


def test_a_run_stops_after_the_step_asked(tiny_data, checkout, tmp_path):
    data, cache = tiny_data
    arguments = ["run", "--config", "configs/demo.yaml", "--runs", tmp_path]
    arguments += set_args([*tiny_overrides(data, cache), "name=half"])
    stopped = geoguesser(*arguments, "--to", "01", cwd=checkout)
    assert stopped.returncode == 0, stopped.stderr
    assert "run stopped after step 01" in stopped.stdout
    assert (tmp_path / "half" / "locations.csv").is_file()
    assert not (tmp_path / "half" / "cells.geojson").exists()
    backwards = geoguesser(*arguments, "--from", "02", "--to", "01", cwd=checkout)
    assert backwards.returncode == 2
    assert "--to 01: comes before the first step to run, 02-grid" in backwards.stderr


def test_an_interrupted_notebook_cell_stops_every_fit_process(ddp_run, tmp_path):
    run_dir, _ = ddp_run
    copy = tmp_path / "ddp"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "tb", "*.ipynb"))
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["train"]["max_epochs"] = 30
    (copy / "config.yaml").write_text(yaml.safe_dump(config))

    def say(line: str) -> None:  # Ctrl-C or the kernel's interrupt, as the cell streams
        if line.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launch_fit(load_settings(copy / "config.yaml"), copy, say)
    assert not fit_processes(copy) and (copy / "checkpoints" / "last.ckpt").exists()
