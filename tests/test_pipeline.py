"""The whole pipeline on tiny data, through papermill, on the CPU."""

import json
import shutil

import pytest
import yaml

from conftest import LUMEN_SAMPLE, REPO
from geoguesser.cli import main
from geoguesser.errors import UserError
from geoguesser.pipeline import STEPS, StepFailed, load_config, run

TINY_TRAIN = {
    "backbone": "tinycnn", "image_size": 32, "batch_size": 16, "num_workers": 0, "max_epochs": 2,
    "freeze_epochs": 1, "accelerator": "cpu", "devices": 1, "progress_bar": False,
}  # fmt: skip


def tiny_config(dataset_dir, cache_dir, name="tiny", **train):
    config = load_config(REPO / "configs" / "demo.yaml")
    config["name"] = name
    config["data"]["dataset_dirs"] = [str(dataset_dir)]
    config["grid"].update(cell_km=100, compare_km=[200, 100])
    config["train"].update(TINY_TRAIN, image_cache_dir=str(cache_dir), **train)
    return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from geoguesser.synthetic import generate

    root = tmp_path_factory.mktemp("pipeline")
    data = generate(root / "data", locations=80, image_size=32, seed=1, progress=False)
    config = tiny_config(data, root / "cache")
    return run(config, runs_root=root / "runs", progress=False), config


def test_every_step_leaves_its_artifacts(finished_run):
    run_dir, _ = finished_run
    for step in STEPS:
        assert (run_dir / f"{step}.ipynb").exists()
    for name in [
        "locations.csv",
        "cells.geojson",
        "enriched.csv",
        "scaler.json",
        "predictions.csv",
    ]:
        assert (run_dir / name).exists(), name
    assert (
        list((run_dir / "checkpoints").glob("best-*.ckpt"))
        and (run_dir / "checkpoints/last.ckpt").exists()
    )
    assert any((run_dir / "tb").glob("events.out.tfevents.*"))
    for figure in ["locations", "grids", "cells", "projection", "errors", "worst"]:
        assert (run_dir / "figures" / f"{figure}.png").stat().st_size > 1000, figure
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["config"]["name"] == "tiny" and resolved["code_version"]["geoguesser"]


def test_metrics_json_holds_every_field_with_sane_values(finished_run):
    run_dir, _ = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"}
    for split in metrics.values():
        assert {
            "n",
            "mean_km",
            "median_km",
            "acc_1km",
            "acc_25km",
            "acc_100km",
            "geoscore",
            "baseline_mean_km",
        } <= set(split)
        assert split["n"] > 0 and 0 < split["median_km"] < 700 and 0 < split["mean_km"] < 700
        assert 0 <= split["acc_1km"] <= split["acc_25km"] <= split["acc_100km"] <= 1
        assert 0 < split["geoscore"] <= 5000 and split["baseline_mean_km"] > 0


def test_error_map_has_one_line_per_prediction_and_works_offline(finished_run):
    run_dir, _ = finished_run
    html = (run_dir / "maps" / "errors.html").read_text()
    n_test = json.loads((run_dir / "metrics.json").read_text())["test"]["n"]
    assert html.count("L.polyline(") == n_test
    assert html.count("data:image/jpeg;base64,") == 4 * n_test  # the views travel inside the file
    assert "cdn.jsdelivr.net" not in html and "https://leafletjs.com" in html  # Leaflet is inlined
    assert "L.map(" in html
    assert (run_dir / "maps" / "cells.html").exists()


def test_refuses_to_overwrite_and_continues_from_a_later_step(finished_run, tmp_path):
    run_dir, config = finished_run
    with pytest.raises(UserError, match="the run exists"):
        run(config, runs_root=run_dir.parent, progress=False)
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(run_dir, copy)
    (copy / "metrics.json").unlink()
    run(config, runs_root=copy.parent, start_from="05", progress=False)
    assert (copy / "metrics.json").exists()
    assert yaml.safe_load((copy / "config.yaml").read_text())["steps"] == ["05-error-maps"]


def test_a_failing_step_is_reported_by_name(finished_run, tmp_path, capsys):
    run_dir, config = finished_run
    shutil.copytree(run_dir, tmp_path / "runs" / "tiny")
    broken = tmp_path / "broken.yaml"
    bad = {**config, "train": {**config["train"], "backbone": "resnet9000"}}
    broken.write_text(yaml.safe_dump(bad))
    code = main(["run", "--config", str(broken), "--runs", str(tmp_path / "runs"), "--from", "04"])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        "step 04-training failed in cell" in err
        and "UserError: unknown backbone 'resnet9000'" in err
    )
    assert str(tmp_path / "runs" / "tiny" / "04-training.ipynb") in err
    with pytest.raises(StepFailed, match="step 04-training failed"):
        run(bad, runs_root=tmp_path / "runs", start_from="04", progress=False)


def test_config_overrides_and_errors(tmp_path):
    config = load_config(
        REPO / "configs" / "demo.yaml", ["train.max_epochs=3", "grid.cell_km=25.5", "name=x"]
    )
    assert (
        config["train"]["max_epochs"] == 3
        and config["grid"]["cell_km"] == 25.5
        and config["name"] == "x"
    )
    with pytest.raises(UserError, match="expected key=value"):
        load_config(REPO / "configs" / "demo.yaml", ["train.max_epochs"])
    with pytest.raises(UserError, match="config not found"):
        load_config(tmp_path / "nope.yaml")
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2


@pytest.mark.skipif(not LUMEN_SAMPLE.exists(), reason="shared/data/lumen-sample is not here")
def test_pipeline_on_the_real_sample(tmp_path):
    config = tiny_config(
        LUMEN_SAMPLE, tmp_path / "cache", name="lumen-sample", max_epochs=1, freeze_epochs=0
    )
    run_dir = run(config, runs_root=tmp_path / "runs", progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == 10 and metrics["test"]["mean_km"] > 0
    assert (run_dir / "maps" / "errors.html").read_text().count("L.polyline(") == 10
