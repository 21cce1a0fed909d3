"""benchmarks/bench_methods.py end to end at a tiny size, and its rerun from what it kept.

The benchmark's promise is one table per dataset with every row asked for and the baseline,
each row fitted once: a rerun with the same code and settings reads the kept placements
(the same numbers, no fit) instead of fitting again. tinycnn (random, no weights to
download) stands in for EfficientNet-Lite0; what it places is not judged here.
"""

import sys

import pytest

from helpers.paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_methods  # noqa: E402

ROWS = ["square classification", "voronoi hybrid", "contrastive"]


def tiny(cache) -> list[str]:
    return [
        "--sizes", "40", "--synth-px", "32", "--synth-epochs", "1", "--no-real",
        "--cache", str(cache), "--only", *ROWS,
        "--set", "train.backbone=tinycnn", "--set", "train.weights=null",
        "--set", "train.mean=null", "--set", "train.std=null", "--set", "grid.compare_km=[100]",
    ]  # fmt: skip


def table_rows(output: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in output.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_every_row_and_the_baseline_in_one_table_and_a_rerun_fits_nothing(tmp_path, capsys):
    assert bench_methods.main(tiny(tmp_path)) == 0
    first = capsys.readouterr().out
    rows = table_rows(first)
    assert list(rows) == ["row", *ROWS, "baseline: training mean"]
    for name in ROWS:
        mean_km = float(rows[name][1])
        assert 0 < mean_km < 1000 and float(rows[name][-1]) > 0  # a distance, a fit's seconds
    assert "scored on the same" in first and "painted 40 synthetic locations" in first

    assert bench_methods.main(tiny(tmp_path)) == 0
    again = capsys.readouterr().out
    assert table_rows(again) == rows  # the same placements, fit times included: read, not refit
    assert "painted" not in again and "features of" not in again


def test_an_unknown_row_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bench_methods.main([*tiny(tmp_path), "--only", "square regresion"])
    assert stop.value.code == 2
    assert "--only 'square regresion': no such row" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
