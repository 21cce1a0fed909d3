"""`geoguesser run --dry-run`: every row of the table, nothing written, blockers one line each."""

import re
import tempfile
from collections import namedtuple

import pandas as pd
import pytest
import torch

from geoguesser.cli import main
from geoguesser.config import load_settings
from geoguesser.model.backbones import TinyCNN
from geoguesser.training.estimate import estimate_line, steps_per_epoch
from geoguesser.training.fit import train
from geoguesser.workflow import dryrun_machine
from helpers.configs import set_args, tiny_config, tiny_overrides
from helpers.paths import REPO
from helpers.snapshots import tree_snapshot

DEMO = REPO / "configs" / "demo.yaml"
ROWS = ["settings", "datasets", "split", "weights", "accelerator", "disk", "host memory",
        "frozen step", "unfrozen step", "epoch", "fit", "estimate"]  # fmt: skip


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Runs root (existing, empty) and the temporary folder, both watched for leftovers."""
    runs, temporary = tmp_path / "runs", tmp_path / "tmp"
    runs.mkdir()
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    return runs, temporary


def dry_run(synthetic_dir, tmp_path, runs, *more) -> int:
    overrides = tiny_overrides(synthetic_dir, tmp_path / "cache", feature_cache=True)
    arguments = ["run", "--config", str(DEMO), *set_args(overrides), "--runs", str(runs)]
    return main([*arguments, *more, "--dry-run"])


def table_rows(out: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^  (\S+(?: \S+)?)\s{2,}", out, re.M)]


def test_dry_run_prints_every_row_and_writes_nothing(synthetic_dir, tmp_path, scratch, capsys):
    runs, temporary = scratch
    before = tree_snapshot(synthetic_dir)
    assert dry_run(synthetic_dir, tmp_path, runs) == 0
    out = capsys.readouterr().out
    assert table_rows(out) == ROWS
    assert "BLOCKED" not in out and "no blockers" in out
    assert re.search(r"estimate: \d+ steps/epoch, ~[\d.]+ s/epoch, ~\d+ (s|min) for the fit", out)
    assert re.search(r"frozen step +[\d.]+ s at batch 16 x 4 views, 32 px", out)
    assert list(runs.iterdir()) == [] and list(temporary.iterdir()) == []
    assert not (tmp_path / "cache").exists()  # the image cache is sized, never built
    assert tree_snapshot(synthetic_dir) == before


def test_a_mismatched_weights_file_is_one_line_and_exit_2(synthetic_dir, tmp_path, scratch, capsys):
    weights = tmp_path / "narrow.pth"
    torch.save(TinyCNN(width=16).state_dict(), weights)
    assert dry_run(synthetic_dir, tmp_path, scratch[0], "--set", f"train.weights={weights}") == 2
    out, err = capsys.readouterr()
    assert re.search(r"^  weights\s+BLOCKED  do not load$", out, re.M)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"geoguesser run: {weights}: does not fit tinycnn (")
    assert "tensors of another shape, e.g. features.0.weight (16, 3, 3, 3) in the file" in lines[0]
    assert list(scratch[0].iterdir()) == []


def test_an_impossible_disk_requirement_is_one_line_and_exit_2(
    synthetic_dir, tmp_path, scratch, capsys, monkeypatch
):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        dryrun_machine.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 10, 10)
    )
    assert dry_run(synthetic_dir, tmp_path, scratch[0]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"geoguesser run: disk: \S+ has 0\.00 GB free, the run needs [\d.]+ GB "
        r"\(checkpoints [\d.]+ GB in \S+, image cache [\d.]+ GB in \S+\)",
        lines[0],
    )


def test_no_gpu_for_accelerator_gpu_is_a_blocker_and_no_step_runs(
    synthetic_dir, tmp_path, scratch, capsys, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = dry_run(synthetic_dir, tmp_path, scratch[0], "--set", "train.accelerator=gpu")
    out, err = capsys.readouterr()
    assert code == 2
    assert re.search(r"^  step\s+not measured: no accelerator to train on$", out, re.M)
    assert err.strip().splitlines() == [
        "geoguesser run: train.accelerator gpu: no GPU here (torch.cuda.is_available() is "
        "false); use train.accelerator=cpu, or run on the GPU box"
    ]


def test_bf16_on_a_gpu_without_it_is_a_blocker(monkeypatch, synthetic_dir):
    properties = namedtuple("properties", "total_memory")
    for name, value in {
        "is_available": lambda: True, "device_count": lambda: 1,
        "get_device_name": lambda index=0: "Old GPU", "is_bf16_supported": lambda: False,
        "get_device_properties": lambda index=0: properties(16 * 10**9),
    }.items():  # fmt: skip
        monkeypatch.setattr(torch.cuda, name, value)
    overrides = ["train.accelerator=gpu", "train.precision=bf16-mixed"]
    settings = load_settings(DEMO, [f"data.dataset_dirs=[{synthetic_dir}]", *overrides])
    row = dryrun_machine.accelerator_row(settings)
    assert row.result == "1 x Old GPU, 16.00 GB; bf16 not supported"
    assert row.blocker == "train.precision bf16-mixed: Old GPU does not support bf16; use 16-mixed"


def test_a_sweep_dry_runs_every_member_and_names_the_blocked_one(
    synthetic_dir, tmp_path, scratch, capsys
):
    weights = tmp_path / "narrow.pth"
    torch.save(TinyCNN(width=16).state_dict(), weights)
    code = dry_run(synthetic_dir, tmp_path, scratch[0], "--set", "name=sw",
                   "--sweep", f"train.weights=null,{weights}")  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert out.count("dry run of sweep member") == 2
    assert "dry run of sweep member 0 (train.weights=null)" in out
    assert table_rows(out) == ROWS * 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geoguesser run: sweep member 1 (train.weights=")
    assert "does not fit tinycnn" in lines[0]
    assert list(scratch[0].iterdir()) == []  # no sweep folder either


def test_steps_per_epoch_counts_as_the_shuffle_and_lightning_do():
    assert steps_per_epoch(100, 32) == 4
    assert steps_per_epoch(100, 32, processes=2) == 2  # 50 locations a process
    assert steps_per_epoch(100, 32, limit=1) == 1
    assert steps_per_epoch(100, 32, limit=0.5) == 2
    assert estimate_line(4, 125.0, 3750.0) == (
        "estimate: 4 steps/epoch, ~125 s/epoch, ~62 min for the fit"
    )


def test_a_fit_prints_the_estimate_per_phase_and_the_time_left(enriched, tmp_path, capsys):
    table, cells, scaler, border = enriched
    train(tiny_config(max_epochs=3, freeze_epochs=1), table, cells, scaler, tmp_path, border)
    lines = capsys.readouterr().out.splitlines()
    estimates = [line for line in lines if line.startswith("estimate: ")]
    assert len(estimates) == 2  # the frozen phase, then the unfrozen one
    assert estimates[0].endswith("for the fit to the unfreeze")
    assert not estimates[1].endswith("to the unfreeze")
    epochs = {line.split()[1]: line for line in lines if line.startswith("epoch ")}
    assert "left" not in epochs["1/3"]  # the last frozen epoch: the unfrozen pace is unknown
    assert re.search(r"  ~\d+ s left$", epochs["2/3"])
    assert "left" not in epochs["3/3"]


def test_the_image_cache_is_sized_as_it_is_built(synthetic_dir, tmp_path):
    from geoguesser.data.image_cache import ImageCache, array_bytes

    uuids = pd.read_csv(synthetic_dir / "data.csv", dtype={"uuid": str}).uuid.tolist()
    cache = ImageCache.open(tmp_path, synthetic_dir, uuids, 32, progress=False)
    assert cache.array.nbytes == array_bytes(len(uuids), 32)
    assert array_bytes(1, 224) == 602_112  # docs/benchmarks.md, Sizing: 0.602 MB at 224 px
