"""Every shipped config runs end to end through `geoguesser run`, shrunk but not changed.

Each file in configs/ has its run here (conftest.shrunk), overriding only where the data,
cache and weights are and how big the run is: a config nobody runs is a config that breaks
unnoticed. configs/lumen.yaml keeps what it exists for (ResNeXt-101, bf16-mixed,
channels-last, the frozen then unfrozen phases, the caches, decoding workers);
configs/sample.yaml has no test split, so it also proves a run without one finishes.
"""

import json

import pytest
import yaml

from geoguesser.workflow.runs import STEPS
from helpers.configs import SHRINKING, shrunk
from helpers.paths import REPO

CONFIGS = sorted(path.name for path in (REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS)
def test_each_config_file_has_a_run_that_only_shrinks_it(config, tmp_path):
    # a KeyError when a config file has no run
    overrides = shrunk(config, tmp_path / "data", tmp_path / "few", tmp_path / "cache")
    assert {item.split("=", 1)[0] for item in overrides} <= SHRINKING


@pytest.mark.parametrize("config", CONFIGS)
def test_the_config_runs_all_five_steps(config, shipped_run):
    run_dir, result, _ = shipped_run(config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for step in STEPS:
        assert f"[{STEPS.index(step) + 1}/5] {step} done in " in result.stdout
        assert (run_dir / f"{step}.ipynb").is_file()
    assert (run_dir / "metrics.json").is_file() and (run_dir / "maps" / "errors.html").is_file()
    assert any(line.startswith("result: ") for line in result.stdout.splitlines())


def test_lumen_keeps_resnext101_bf16_channels_last_both_phases_caches_and_workers(shipped_run):
    run_dir, result, _ = shipped_run("lumen.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    train = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    assert train["backbone"] == "resnext101_32x8d"
    assert train["precision"] == "bf16-mixed" and train["channels_last"] is True
    assert 0 < train["freeze_epochs"] < train["max_epochs"]  # frozen, then unfrozen
    assert train["image_cache_dir"] and train["feature_cache"] and train["num_workers"] > 0
    epochs = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs == [f"{i}/{train['max_epochs']}" for i in range(1, train["max_epochs"] + 1)]


def test_a_run_without_a_test_split_reports_validation(shipped_run):
    # configs/sample.yaml: fractions [0.85, 0.15, 0.0]
    run_dir, result, _ = shipped_run("sample.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test" not in metrics and metrics["val"]["n"] > 0
    lines = result.stdout.splitlines()
    assert "the test split is empty (split.fractions): no test" in lines
    assert any(line.startswith("no test locations (split.fractions): ") for line in lines)
    (result_line,) = [line for line in lines if line.startswith("result: ")]
    assert result_line.startswith(f"result: val mean {metrics['val']['mean_km']:.1f} km")
    assert result_line.endswith("(no test split)")
    assert f" · val · n={metrics['val']['n']} · " in (run_dir / "maps/errors.html").read_text()
