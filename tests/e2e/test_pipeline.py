"""The whole pipeline on tiny data, as a user runs it: `geoguesser run` in a checkout, on the CPU.

The runs happen in a second checkout made here (the notebooks and configs of this one, in
their own git repository) while the library comes from the one shared environment, as when
two clones share a virtualenv: the notebooks, the run folders and the recorded commit must
all come from the checkout the command was run in.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
import yaml

from geoguesser.cli import main
from geoguesser.config import load_settings
from geoguesser.errors import UserError
from geoguesser.workflow.runs import MARKER, STEPS, first_unfinished, open_step
from helpers.checkout import CLONE_MARK
from helpers.configs import set_args, tiny_overrides
from helpers.paths import LUMEN_SAMPLE, REPO
from helpers.processes import fit_processes, geoguesser


@pytest.fixture(scope="module")
def finished_run(shipped_run):
    """configs/demo.yaml's run on tiny data (tests/e2e/test_configs.py checks it too)."""
    run_dir, result, overrides = shipped_run("demo.yaml")
    assert result.returncode == 0, result.stderr
    return run_dir, result, overrides


def test_every_step_leaves_its_artifacts(finished_run):
    run_dir, _, _ = finished_run
    for step in STEPS:
        assert (run_dir / f"{step}.ipynb").exists()
    outputs = ["locations.csv", "cells.geojson", "enriched.csv", "scaler.json", "predictions.csv"]
    for name in outputs:
        assert (run_dir / name).exists(), name
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert (run_dir / "checkpoints/last.ckpt").exists()
    assert any((run_dir / "tb").glob("events.out.tfevents.*"))
    figures = ["locations", "density", "grids", "cells", "balance", "projection", "training",
               "errors", "worst"]  # fmt: skip
    for figure in figures:
        assert (run_dir / "figures" / f"{figure}.png").stat().st_size > 1000, figure
    assert (run_dir / MARKER).is_file()


def test_executed_notebooks_show_each_figure_once_and_no_stray_values(finished_run):
    run_dir, _, _ = finished_run
    for step in STEPS:
        for cell in nbformat.read(run_dir / f"{step}.ipynb", as_version=4).cells:
            if cell.cell_type != "code":
                continue
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert len(images) <= 1, f"{step}: a figure shown twice in {cell.source[:60]!r}"
            for output in cell.outputs:
                text = output.get("data", {}).get("text/plain", "")
                assert "PosixPath(" not in text and "Text(" not in text, f"{step}: {text[:80]}"


def test_the_error_map_is_shown_inline(finished_run):
    run_dir, _, _ = finished_run
    cells = nbformat.read(run_dir / "05-error-maps.ipynb", as_version=4).cells
    html = [o["data"]["text/html"] for c in cells if c.cell_type == "code" for o in c.outputs
            if "text/html" in o.get("data", {})]  # fmt: skip
    # the page travels inside the output, views and all: nothing to fetch from Jupyter
    shown = [h for h in html if "<iframe srcdoc=" in h and 'title="errors.html"' in h]
    assert len(shown) == 1
    assert (
        "window.geoguesserSheets = {&quot;views/sheet-0000.jpg&quot;:&quot;data:image/jpeg"
        in (shown[0])
    )


def test_the_terminal_shows_steps_epochs_and_the_result_without_kernel_noise(finished_run):
    _, result, _ = finished_run
    lines = result.stdout.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    for line in epochs:
        assert "train loss" in line and "val mean" in line and "median" in line and " lr " in line
    assert re.search(r"^estimate: \d+ steps/epoch, ~[\d.]+ s/epoch, ~\d+ (s|min) for the fit",
                     result.stdout, re.M)  # fmt: skip
    assert "[4/5] 04-training" in lines and any(line.startswith("predicting: ") for line in lines)
    result_line = next(line for line in lines if line.startswith("result: "))
    assert "test mean" in result_line and "always answering the training mean" in result_line
    assert "without encryption" not in result.stderr and "Traceback" not in result.stderr


def test_notebooks_runs_and_commit_come_from_the_checkout_the_user_is_in(finished_run, checkout):
    run_dir, _, _ = finished_run
    executed = nbformat.read(run_dir / "01-eda.ipynb", as_version=4)
    assert any(cell.source == CLONE_MARK for cell in executed.cells)
    assert not (REPO / "runs" / "tiny").exists()
    history = yaml.safe_load((run_dir / "config.yaml").read_text())["history"]
    head = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert history[0]["code_version"]["commit"] == head
    assert history[0]["code_version"]["checkout"] == str(checkout)


def test_config_yaml_holds_absolute_resolved_settings_and_the_invocation(finished_run, tiny_data):
    run_dir, _, overrides = finished_run
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["name"] == "tiny" and recorded["train"]["backbone"] == "tinycnn"
    assert recorded["data"]["dataset_dirs"] == [str(tiny_data[0])]
    assert recorded["train"]["image_cache_dir"] == str(tiny_data[1])
    (entry,) = recorded["history"]
    assert entry["steps"] == STEPS and entry["overrides"] == overrides
    assert entry["config_file"] == str(run_dir.parents[1] / "configs" / "demo.yaml")


def test_metrics_json_holds_every_field_with_sane_values(finished_run):
    run_dir, _, _ = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"synthetic", "val", "test"} and metrics["synthetic"] is True
    for split in (metrics["val"], metrics["test"]):
        assert {
            "n", "mean_km", "median_km", "acc_1km", "acc_25km", "acc_100km", "geoscore",
            "baseline_mean_km",
        } <= set(split)  # fmt: skip
        assert split["n"] > 0 and 0 < split["median_km"] < 700 and 0 < split["mean_km"] < 700
        assert 0 <= split["acc_1km"] <= split["acc_25km"] <= split["acc_100km"] <= 1
        assert 0 < split["geoscore"] <= 5000 and split["baseline_mean_km"] > 0


def test_metrics_json_is_written_by_the_last_cell(finished_run):
    run_dir, _, _ = finished_run
    last = [c for c in nbformat.read(run_dir / "05-error-maps.ipynb", 4).cells if c.source][-1]
    assert "metrics.json" in last.source


def test_error_map_references_views_of_every_test_location_and_works_offline(finished_run):
    run_dir, _, _ = finished_run
    html = (run_dir / "maps" / "errors.html").read_text()
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    references = re.findall(r'\["(views/sheet-\d+\.jpg)",(\d+)\]', html)
    assert len(references) == test["n"]  # every test location has its views beside the map
    assert all((run_dir / "maps" / path).is_file() for path, _ in references)
    assert "data:image/jpeg;base64," not in html
    assert "cdn.jsdelivr.net" not in html and "https://leafletjs.com" in html  # Leaflet is inlined
    assert "SYNTHETIC data · error map · test · n=" in html
    assert f"mean {test['mean_km']:.1f} km" in html
    cells = (run_dir / "maps" / "cells.html").read_text()
    assert "test: mean error per cell" in cells and "val: mean error per cell" in cells


def test_compare_and_its_notebook_work_on_finished_runs(finished_run, checkout, tmp_path):
    run_dir, _, _ = finished_run
    other = tmp_path / "runs" / "other"
    shutil.copytree(run_dir, other)
    recorded = yaml.safe_load((other / "config.yaml").read_text())
    recorded["train"]["lr"] = 0.5
    (other / "config.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    unfinished = tmp_path / "runs" / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "metrics.json").unlink()
    result = geoguesser("compare", run_dir, tmp_path / "runs" / "*", cwd=checkout)
    assert result.returncode == 0, result.stderr
    assert "train.lr" in result.stdout and "test mean km" in result.stdout
    assert "tiny (SYNTHETIC)" in result.stdout and "other (SYNTHETIC)" in result.stdout
    assert f"skipped {unfinished}: unfinished (no metrics.json)" in result.stderr

    import papermill

    from geoguesser.workflow.pipeline import ensure_kernel

    executed = tmp_path / "06.ipynb"
    papermill.execute_notebook(
        str(checkout / "notebooks" / "06-compare-runs.ipynb"),
        str(executed),
        parameters={
            "runs": [str(run_dir), str(tmp_path / "runs" / "*")],
            "out_dir": str(tmp_path / "cmp"),
        },
        kernel_name=ensure_kernel(),
        cwd=str(checkout),
        progress_bar=False,
    )
    for name in ["compare.csv", "cumulative.png", "mean_km.png"]:
        assert (tmp_path / "cmp" / name).stat().st_size > 100
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert len(table) == 2 and "train.lr" in table.columns


def test_refuses_to_overwrite_and_continues_from_a_later_step_appending_history(
    finished_run, checkout, tmp_path
):
    run_dir, _, overrides = finished_run
    again = geoguesser("run", "--config", "configs/demo.yaml", *set_args(overrides), cwd=checkout)
    assert again.returncode == 2 and "exists; pass --overwrite to replace it" in again.stderr
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(run_dir, copy)
    config = checkout / "configs" / "demo.yaml"
    more = [*overrides, "maps.worst=0"]  # none shown: step 05 still draws its figures
    earlier = (copy / "figures" / "worst.png").stat().st_mtime_ns  # copied with the run
    assert main(["run", "--config", str(config), "--runs", str(copy.parent), "--from", "05",
                 "--notebooks", str(checkout / "notebooks"), *set_args(more)]) == 0  # fmt: skip
    recorded = yaml.safe_load((copy / "config.yaml").read_text())
    assert recorded["maps"]["worst"] == 0
    assert (copy / "figures" / "worst.png").stat().st_mtime_ns > earlier  # not the old run's
    assert [entry["steps"] for entry in recorded["history"]] == [STEPS, ["05-error-maps"]]
    assert recorded["history"][1]["overrides"] == more
    assert (copy / "metrics.json").exists()


def test_overwrite_replaces_only_a_geoguesser_run(finished_run, checkout, tmp_path, capsys):
    _, _, overrides = finished_run
    runs = tmp_path / "runs"
    precious = runs / "tiny"
    precious.mkdir(parents=True)
    (precious / "thesis.tex").write_text("years of work")
    config = checkout / "configs" / "demo.yaml"
    code = main(["run", "--config", str(config), "--runs", str(runs), "--overwrite",
                 "--notebooks", str(checkout / "notebooks"), *set_args(overrides)])  # fmt: skip
    assert code == 2
    assert "not a geoguesser run folder" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("name", ["..", "../victim", ".", "a/b"])
def test_unsafe_names_delete_nothing(tmp_path, tiny_data, checkout, name, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    runs = tmp_path / "runs"
    runs.mkdir()
    overrides = [*tiny_overrides(*tiny_data), f"name={name}"]
    code = main(["run", "--config", str(checkout / "configs/demo.yaml"), "--runs", str(runs),
                 "--overwrite", *set_args(overrides)])  # fmt: skip
    assert code == 2 and "is not a plain folder name" in capsys.readouterr().err
    assert (victim / "keep.txt").read_text() == "keep" and runs.is_dir()


def test_a_failing_step_is_reported_by_name(finished_run, checkout, tmp_path, capsys):
    run_dir, _, overrides = finished_run
    shutil.copytree(run_dir, tmp_path / "runs" / "tiny")
    # A view that vanished after step 01 made its table: training names the missing file.
    table = (tmp_path / "runs" / "tiny" / "enriched.csv").read_text().splitlines()
    broken = table[1].replace(table[1].split(",")[0], "no-such-uuid", 1)
    (tmp_path / "runs" / "tiny" / "enriched.csv").write_text("\n".join([table[0], broken]))
    code = main(["run", "--config", str(checkout / "configs/demo.yaml"), "--runs",
                 str(tmp_path / "runs"), "--from", "04", "--notebooks",
                 str(checkout / "notebooks"), *set_args(overrides)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "step 04-training failed in cell" in err and "no-such-uuid" in err
    assert str(tmp_path / "runs" / "tiny" / "04-training.ipynb") in err


def test_from_a_step_needs_the_earlier_steps(tmp_path, tiny_data, checkout, capsys):
    overrides = [*tiny_overrides(*tiny_data), "name=fresh"]
    code = main(["run", "--config", str(checkout / "configs/demo.yaml"), "--runs",
                 str(tmp_path / "runs"), "--from", "04", *set_args(overrides)])  # fmt: skip
    assert code == 2 and "no run to continue from step 04-training" in capsys.readouterr().err


def test_outside_a_checkout_the_notebooks_must_be_named(tmp_path, tiny_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, [*tiny_overrides(*tiny_data), "name=x"])
    from geoguesser.workflow.pipeline import run

    with pytest.raises(UserError, match="not inside a geoguesser checkout"):
        run(settings, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def interrupted_at(prefix: str, name: str, tmp_path, tiny_data, checkout):
    """`geoguesser run`, Ctrl-C'd once a line starting with `prefix` was printed.

    Returns (the run's arguments, its exit status, its standard error, the run folder).
    """
    overrides = [*tiny_overrides(*tiny_data, max_epochs=4, freeze_epochs=0), f"name={name}"]
    arguments = ["--config", "configs/demo.yaml", "--runs", str(tmp_path / "runs")]
    arguments += set_args(overrides)
    process = subprocess.Popen(
        [sys.executable, "-m", "geoguesser.cli", "run", *arguments],
        cwd=checkout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in process.stdout:
        if line.startswith(prefix):
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
            break
    process.stdout.read()
    err = process.stderr.read()
    return arguments, process.wait(timeout=300), err, tmp_path / "runs" / name


def continue_hint(run_dir: Path) -> str:
    """What an interrupted run must say: where it goes on, from what the run folder holds."""
    step = first_unfinished(run_dir)
    if step == STEPS[0]:
        return "geoguesser run: interrupted; start again with --overwrite"
    return f"geoguesser run: interrupted; continue with --from {step[:2]}"


@pytest.mark.parametrize("prefix", ["[1/5] 01-eda", "[3/5] 03-crs-enrichment done in "])
def test_ctrl_c_anywhere_is_the_one_line_naming_where_to_go_on(
    prefix, tmp_path, tiny_data, checkout
):
    arguments, code, err, run_dir = interrupted_at(
        prefix, "anywhere", tmp_path, tiny_data, checkout
    )
    assert code == 130
    assert err.strip().splitlines()[-1] == continue_hint(run_dir)
    assert "Traceback" not in err and "Kernel died" not in err
    assert not fit_processes(run_dir) and not (run_dir / "metrics.json").exists()
    if first_unfinished(run_dir) == STEPS[0]:  # and the advice works
        again = geoguesser("run", *arguments, "--overwrite", "--to", "01", cwd=checkout)
        assert again.returncode == 0, again.stderr
        assert first_unfinished(run_dir) == STEPS[1]


def test_ctrl_c_during_training_is_one_line_and_the_run_continues(tmp_path, tiny_data, checkout):
    # After epoch 2's line the signal lands wherever the machine's speed puts it (in epoch 3,
    # after the fit, in step 05): the line names the step, and the run goes on from there.
    arguments, code, err, run_dir = interrupted_at(
        "epoch 2/", "stopped", tmp_path, tiny_data, checkout
    )
    assert code == 130
    assert err.strip().splitlines()[-1] == continue_hint(run_dir)
    assert "Traceback" not in err and "Kernel died" not in err
    assert not fit_processes(run_dir)  # the fit process went with the run
    assert (run_dir / "checkpoints" / "last.ckpt").exists()  # epoch 1's at least
    assert not (run_dir / "metrics.json").exists()
    step = first_unfinished(run_dir)
    epochs = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 1
    resumed = geoguesser("run", *arguments, "--from", step[:2], cwd=checkout)
    assert resumed.returncode == 0, resumed.stderr
    if step == "04-training":
        said = f"resuming the fit after epoch {epochs} from " if epochs < 4 else "afresh"
        line = next(x for x in resumed.stdout.splitlines() if x.startswith(("resuming", "start")))
        assert said in line
    assert (run_dir / "metrics.json").exists()


@pytest.mark.skipif(not LUMEN_SAMPLE.exists(), reason="shared/data/lumen-sample is not here")
def test_pipeline_on_the_real_sample(tmp_path, checkout):
    overrides = tiny_overrides(LUMEN_SAMPLE, tmp_path / "cache", max_epochs=1, freeze_epochs=0)
    overrides.append("name=lumen-sample")
    code = main(["run", "--config", str(checkout / "configs/demo.yaml"), "--runs",
                 str(tmp_path / "runs"), "--notebooks", str(checkout / "notebooks"),
                 *set_args(overrides)])  # fmt: skip
    assert code == 0
    run_dir = tmp_path / "runs" / "lumen-sample"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == 10 and metrics["test"]["mean_km"] > 0
    assert metrics["synthetic"] is False
    html = (run_dir / "maps" / "errors.html").read_text()
    assert len(re.findall(r'\["views/sheet-\d+\.jpg",\d+\]', html)) == 10
    assert "SYNTHETIC" not in html


def test_an_interactive_notebook_works_from_its_checkout_root(checkout, tiny_data, monkeypatch):
    # JupyterLab starts the kernel in the notebook's folder; the parameters cell is edited.
    monkeypatch.chdir(checkout / "notebooks")
    data = [f"data.dataset_dirs=[{tiny_data[0]}]"]
    settings, run_dir = open_step("01-eda", "runs/dev", "configs/demo.yaml", data)
    assert Path.cwd() == checkout and run_dir == checkout / "runs" / "dev"
    assert settings.train.backbone == "tinycnn"
    settings, _ = open_step("02-grid", "runs/dev", "configs/demo.yaml", ["grid.cell_km=30"])
    assert settings.grid.cell_km == 30 and settings.data.dataset_dirs == [tiny_data[0]]
    settings, _ = open_step("02-grid", "runs/dev", "configs/demo.yaml", [])
    assert settings.grid.cell_km == 30  # the run's setting now; undo it with grid.cell_km=50
    history = yaml.safe_load((run_dir / "config.yaml").read_text())["history"]
    assert [entry["overrides"] for entry in history] == [data, ["grid.cell_km=30"], []]
    assert (run_dir / MARKER).is_file()
