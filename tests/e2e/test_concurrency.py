"""Many runs at once on one environment, one runs root and one image cache.

Two members of an array job, two users' runs or two tuning workers start at the same
moment; none may fail or change the other's results because of it. Each test starts its
processes together through a barrier (or at once as subprocesses), then requires every one
to succeed with what it would have produced alone.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import traceback
from pathlib import Path

from geoguesser.atomic import locked
from geoguesser.cli import main
from geoguesser.workflow.runs import IN_USE, LOCK_NAME, STEPS, mark_completed
from geoguesser.workflow.sweeps import plan, write_summary
from helpers.configs import set_args, tiny_overrides
from helpers.paths import REPO
from helpers.processes import geoguesser
from helpers.snapshots import tree_bytes
from helpers.sweeps import pair_arguments, pair_metrics

TOGETHER = 8  # processes started at the same moment


def _register(prefix: str, barrier, results) -> None:
    """One process's kernel registration, released with the others."""
    sys.prefix = prefix  # where ensure_kernel installs: a fresh environment of this test's
    from geoguesser.workflow.pipeline import ensure_kernel

    barrier.wait()
    try:
        ensure_kernel()
        results.put(None)
    except BaseException:
        results.put(traceback.format_exc())


def _register_together(prefix: Path) -> list[str]:
    """Tracebacks of the registrations that failed, `TOGETHER` of them started at once."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(TOGETHER), context.Queue()
    processes = [
        context.Process(target=_register, args=(str(prefix), barrier, results))
        for _ in range(TOGETHER)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join()
    return [outcome for outcome in outcomes if outcome is not None]


def _spec(prefix: Path) -> dict:
    """The kernel `geoguesser` as Jupyter finds it in `prefix`, files and kernel.json."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    spec = manager.get_kernel_spec("geoguesser")
    return {"files": sorted(p.name for p in Path(spec.resource_dir).iterdir()), **spec.to_dict()}


def test_kernel_registrations_started_together_all_succeed(tmp_path):
    prefix = tmp_path / "env"
    kernel_json = prefix / "share" / "jupyter" / "kernels" / "geoguesser" / "kernel.json"
    for round_ in range(3):  # a fresh environment, then a registered one, then a stale one
        before = kernel_json.stat().st_mtime_ns if round_ == 1 else None
        failures = _register_together(prefix)
        assert not failures, f"round {round_}: {len(failures)} failed; first:\n{failures[0]}"
        spec = _spec(prefix)
        assert spec["files"] == ["kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"]
        assert spec["argv"][0] == sys.executable and spec["display_name"] == "Python (geoguesser)"
        if round_ == 1:  # a current spec is left as it is
            assert kernel_json.stat().st_mtime_ns == before
        stale = {**json.loads(kernel_json.read_text()), "argv": ["/gone/python", "-m", "x"]}
        if round_ == 1:
            kernel_json.write_text(json.dumps(stale))
    leftovers = [p.name for p in kernel_json.parents[1].iterdir() if p.name != "geoguesser"]
    assert not leftovers  # no staging folder is left behind


def _started(arguments: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "geoguesser.cli", "run", *arguments],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_eight_runs_and_a_parallel_sweep_started_together_end_as_they_would_alone(
    tmp_path, checkout, tiny_data, pair_alone
):
    data, _ = tiny_data
    runs, cache = tmp_path / "runs", tmp_path / "cache"  # one runs root, one fresh cache
    first_step = [*tiny_overrides(data, cache)]
    arguments = ["--config", "configs/demo.yaml", "--runs", tmp_path / "alone", "--to", "01"]
    alone = geoguesser("run", *arguments, *set_args([*first_step, "name=one"]), cwd=checkout)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    commands = [
        ["--config", "configs/demo.yaml", "--runs", str(runs), "--to", "01",
         *set_args([*first_step, f"name=run{i}"])]
        for i in range(TOGETHER)
    ]  # fmt: skip
    # The two members of one sweep, as two array tasks: both build the image cache at once.
    pair = ["--config", "configs/demo.yaml", *pair_arguments(data, cache, runs)]
    commands += [[*pair, "--sweep-index", str(i)] for i in (0, 1)]
    processes = [_started(command, checkout) for command in commands]
    outputs = [process.communicate(timeout=1200)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0 and "Traceback" not in output, output
    expected = (tmp_path / "alone" / "one" / "locations.csv").read_bytes()
    for i in range(TOGETHER):
        assert (runs / f"run{i}" / "locations.csv").read_bytes() == expected
        assert (runs / f"run{i}" / "01-eda.ipynb").is_file()
    assert pair_metrics(runs / "pair") == pair_alone
    summary = (runs / "pair" / "summary.txt").read_text().splitlines()
    assert [row.split()[2] for row in summary[1:]] == ["finished", "finished"]


def test_a_second_run_of_a_folder_in_use_stops_in_one_line_and_touches_nothing(
    tmp_path, tiny_data, checkout, capsys
):
    runs = tmp_path / "runs"
    run_dir = runs / "busy"
    run_dir.mkdir(parents=True)
    mark_completed(run_dir, ["01-eda"])
    overrides = set_args([*tiny_overrides(*tiny_data), "name=busy"])
    base = ["run", "--config", str(checkout / "configs/demo.yaml"), "--runs", str(runs)]
    with locked(run_dir / LOCK_NAME):  # what the run using it holds until it ends
        before = tree_bytes(run_dir)
        for how in (["--from", "02"], ["--overwrite"]):
            assert main([*base, *how, *overrides]) == 2
            err = capsys.readouterr().err
            assert err.strip() == f"geoguesser run: {run_dir}: {IN_USE}"
        assert tree_bytes(run_dir) == before


def test_the_sweep_summary_lists_every_member_as_its_folder_says(tmp_path, synthetic_dir):
    overrides = [f"data.dataset_dirs=[{synthetic_dir}]", "name=study"]
    _, members = plan(REPO / "configs" / "demo.yaml", overrides, ["grid.cell_km=30,50,70"])
    sweep_dir = tmp_path / "study"
    finished, unfinished = (sweep_dir / members[0].name), (sweep_dir / members[1].name)
    for run_dir, steps in ((finished, STEPS), (unfinished, STEPS[:2])):
        run_dir.mkdir(parents=True)
        mark_completed(run_dir, steps)
    metrics = {"val": {"mean_km": 41.25}, "test": {"mean_km": 52.75}}
    (finished / "metrics.json").write_text(json.dumps(metrics))
    rows = write_summary(sweep_dir, members, []).read_text().splitlines()[1:]
    assert [row.split()[2:] for row in rows] == [
        ["finished", "41.2", "52.8"],
        ["unfinished", "-", "-", "next", "step", "03-crs-enrichment"],
        ["pending", "-", "-"],
    ]
