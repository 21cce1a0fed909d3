"""Sweeps: members planned and checked up front, run as sibling runs, continued when re-run."""

import json

import pytest

from geoguesser.cli import main
from geoguesser.errors import UserError
from geoguesser.workflow.sweeps import member_name, plan, split_values
from helpers.configs import set_args, tiny_overrides
from helpers.paths import REPO
from helpers.processes import geoguesser


def test_values_split_at_top_level_commas_only():
    assert split_values("null,25, 65") == ["null", "25", "65"]
    assert split_values("[a, b],[c],'x,y'") == ["[a, b]", "[c]", "'x,y'"]
    for bad in ["[a, b", "1,,2", "'open"]:
        with pytest.raises(UserError, match="unbalanced brackets or quotes, or an empty value"):
            split_values(bad)


def test_member_names_are_safe_folder_names():
    assert member_name(["train.tau_km=25", "grid.cell_km=30"]) == "train.tau_km=25,grid.cell_km=30"
    assert member_name(["data.dataset_dirs=[/a/b, c]"]) == "data.dataset_dirs=_a_b,_c_"
    assert len(member_name([f"train.backbone={'x' * 400}"])) == 200


def test_members_combine_every_value_first_sweep_slowest(tmp_path, synthetic_dir):
    overrides = [f"data.dataset_dirs=[{synthetic_dir}]", "name=study"]
    name, members = plan(
        REPO / "configs" / "demo.yaml",
        overrides,
        ["train.tau_km=null,25", "grid.cell_km=30,50,70"],
    )
    assert name == "study" and [m.index for m in members] == list(range(6))
    assert [m.name for m in members[:4]] == [
        "train.tau_km=null,grid.cell_km=30",
        "train.tau_km=null,grid.cell_km=50",
        "train.tau_km=null,grid.cell_km=70",
        "train.tau_km=25,grid.cell_km=30",
    ]
    assert members[3].settings.train.tau_km == 25 and members[3].settings.grid.cell_km == 30
    assert members[0].settings.train.tau_km is None


def test_a_bad_member_value_stops_the_sweep_before_anything_runs(tmp_path, synthetic_dir, capsys):
    code = main(["run", "--config", str(REPO / "configs/demo.yaml"), "--runs",
                 str(tmp_path / "runs"), "--set", f"data.dataset_dirs=[{synthetic_dir}]",
                 "--sweep", "grid.cell_km=30,-5"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "sweep member grid.cell_km=-5: grid.cell_km: Input should be greater than 0" in err
    assert not (tmp_path / "runs").exists()
    code = main(["run", "--config", str(REPO / "configs/demo.yaml"), "--runs",
                 str(tmp_path / "runs"), "--set", f"data.dataset_dirs=[{synthetic_dir}]",
                 "--sweep", "grid.cell_km=30,50", "--sweep-index", "2"])  # fmt: skip
    assert code == 2 and "the sweep has members 0..1" in capsys.readouterr().err


def test_a_sweep_runs_its_members_isolates_a_failure_and_continues_when_rerun(
    tmp_path, checkout, tiny_data
):
    # vit_b_16 passes the settings check but cannot take 32 px images: it fails in step 04.
    overrides = [*tiny_overrides(*tiny_data, max_epochs=1, freeze_epochs=0), "name=study"]
    arguments = ["run", "--config", "configs/demo.yaml", "--runs", str(tmp_path / "runs")]
    arguments += [*set_args(overrides), "--sweep", "train.backbone=tinycnn,vit_b_16"]
    first = geoguesser(*arguments, cwd=checkout)
    assert first.returncode == 1, first.stderr
    study = tmp_path / "runs" / "study"
    good, bad = study / "train.backbone=tinycnn", study / "train.backbone=vit_b_16"
    metrics = json.loads((good / "metrics.json").read_text())
    assert (bad / "03-crs-enrichment.ipynb").exists() and not (bad / "metrics.json").exists()
    table = first.stdout[first.stdout.index("  #  member") :].splitlines()
    assert table[1].split()[:4] == [
        "0", "train.backbone=tinycnn", "finished", f"{metrics['val']['mean_km']:.1f}",
    ]  # fmt: skip
    assert table[1].split()[4] == f"{metrics['test']['mean_km']:.1f}"
    assert table[2].split()[:3] == ["1", "train.backbone=vit_b_16", "failed"]
    assert "cannot take 32 px" in table[2]

    again = geoguesser(*arguments, cwd=checkout)
    assert again.returncode == 1
    assert "continuing train.backbone=vit_b_16 from 04-training" in again.stdout
    assert "[1/5] 01-eda" not in again.stdout  # the finished member is not run again
    table = again.stdout[again.stdout.index("  #  member") :].splitlines()
    assert table[1].split()[2] == "skipped" and table[2].split()[2] == "failed"

    only = geoguesser(*arguments, "--sweep-index", "0", cwd=checkout)
    assert only.returncode == 0
    assert len(only.stdout[only.stdout.index("  #  member") :].splitlines()) == 2
