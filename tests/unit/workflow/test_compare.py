"""`geoguesser compare`: only the settings that differ, the metrics, unfinished runs skipped."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from geoguesser.cli import main
from geoguesser.config import load_settings
from geoguesser.workflow.compare import comparison_table, expand, load_runs
from helpers.datasets import make_dataset


def make_run(folder, overrides, test_mean, finished=True, synthetic=True, seed=0):
    """A run folder as the pipeline leaves it: config.yaml, predictions.csv, metrics.json."""
    folder.mkdir(parents=True)
    data = (
        make_dataset(folder.parents[1] / "data")
        if not (folder.parents[1] / "data").exists()
        else folder.parents[1] / "data"
    )
    settings = load_settings(None, [f"data.dataset_dirs=[{data}]", *overrides]).to_yaml_dict()
    (folder / "config.yaml").write_text(
        yaml.safe_dump({**settings, "history": []}, sort_keys=False)
    )
    errors = np.random.default_rng(seed).exponential(test_mean, 50)
    pd.DataFrame({"uuid": [f"u{i}" for i in range(100)], "split": ["val", "test"] * 50,
                  "error_km": np.repeat(errors, 2)}).to_csv(folder / "predictions.csv")  # fmt: skip
    if finished:
        split = {"n": 50, "mean_km": test_mean, "median_km": test_mean * 0.7,
                 "acc_25km": 0.3, "baseline_mean_km": 120.0}  # fmt: skip
        metrics = {"synthetic": synthetic, "val": split, "test": split}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "runs" / "cells"
    make_run(root / "grid.cell_km=30", ["grid.cell_km=30"], 40.0)
    make_run(root / "grid.cell_km=50", ["grid.cell_km=50"], 45.0, seed=1)
    make_run(root / "grid.cell_km=70", ["grid.cell_km=70"], 0.0, finished=False)
    return root


def test_a_sweep_shows_what_was_swept_and_skips_the_unfinished(sweep):
    skipped = []
    runs = load_runs([str(sweep / "*")], say=skipped.append)
    assert [run.label for run in runs] == ["grid.cell_km=30", "grid.cell_km=50"]
    assert skipped == [f"skipped {sweep / 'grid.cell_km=70'}: unfinished (no metrics.json)"]
    table = comparison_table(runs)
    settings = [c for c in table.columns if "." in c]
    assert settings == ["grid.cell_km"]
    assert table["test mean km"].tolist() == [40.0, 45.0]
    assert table["baseline km"].tolist() == [120.0, 120.0]
    assert all(label.endswith("(SYNTHETIC)") for label in table.index)


def test_unrelated_runs_show_every_setting_that_differs(tmp_path, sweep):
    other = make_run(tmp_path / "elsewhere" / "lr", ["train.lr=0.01", "split.seed=3"], 50.0)
    runs = load_runs([sweep / "grid.cell_km=30", other])
    table = comparison_table(runs)
    differing = ["data.dataset_dirs", "split.seed", "grid.cell_km", "train.lr"]
    assert [c for c in table.columns if "." in c] == differing
    assert table.index.tolist() == ["cells/grid.cell_km=30 (SYNTHETIC)", "elsewhere/lr (SYNTHETIC)"]


def test_the_command_prints_the_table_and_writes_figures(sweep, tmp_path, capsys):
    out = tmp_path / "comparison"
    assert main(["compare", str(sweep / "*"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "grid.cell_km" in captured.out and "test mean km" in captured.out
    assert "40.0" in captured.out and "30%" in captured.out
    assert "unfinished (no metrics.json)" in captured.err
    for name in ["compare.csv", "cumulative.png", "mean_km.png"]:
        assert (out / name).stat().st_size > 100


def test_nothing_finished_is_one_line_and_exit_2(tmp_path, capsys):
    make_run(tmp_path / "a", [], 0.0, finished=False)
    assert main(["compare", str(tmp_path / "a")]) == 2
    assert "no finished run to compare" in capsys.readouterr().err


def test_a_pattern_matching_nothing_is_named(tmp_path):
    from geoguesser.errors import UserError

    with pytest.raises(UserError, match="matches no folder"):
        expand([str(tmp_path / "nothing*")])
