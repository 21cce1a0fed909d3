import numpy as np
import pandas as pd
import pytest

from geoguesser.cli import main
from geoguesser.errors import UserError
from geoguesser.geo.borders import inside, load_border
from geoguesser.geo.grid import assign_cells, make_cells
from geoguesser.geo.sampling import sample_fill_cells, sample_uniform
from helpers.datasets import make_dataset


def test_uniform_points_are_inside_deterministic_and_spread_by_area():
    border = load_border()
    points = sample_uniform(border, 3000, seed=4)
    assert inside(border, points.latitude, points.longitude).all()
    assert points.equals(sample_uniform(border, 3000, seed=4))
    assert not points.equals(sample_uniform(border, 3000, seed=5))
    # Uniform by area: Slavonia (east of 17.5 E, about a fifth of the country) gets about a fifth.
    east = (points.longitude > 17.5).mean()
    assert 0.12 < east < 0.28


def test_fill_cells_tops_up_thin_cells_to_the_target():
    border = load_border()
    existing = sample_uniform(border, 400, seed=1)
    existing = existing[existing.longitude < 16.5]  # the east has no data yet
    cells = make_cells(border, existing.latitude, existing.longitude, cell_km=100, min_train=0)
    points = sample_fill_cells(cells, existing.latitude, existing.longitude, target=10, seed=0)
    assert inside(border, points.latitude, points.longitude).all()
    per_cell = points.groupby("cell").agg(had=("cell_had", "first"), got=("latitude", "size"))
    assert (per_cell.had + per_cell.got == 10).all()  # topped up exactly to the target
    assert per_cell.had.min() == 0  # the empty eastern cells are served too
    everything = pd.concat([existing, points[["latitude", "longitude"]]])
    every_cell = cells.assign(label=np.arange(len(cells)))
    labels = assign_cells(every_cell, everything.latitude, everything.longitude)
    assert np.bincount(labels, minlength=len(cells)).min() >= 10


def test_fill_cells_with_a_cap_raises_the_emptiest_cells_first():
    border = load_border()
    existing = sample_uniform(border, 300, seed=2)
    cells = make_cells(border, existing.latitude, existing.longitude, cell_km=100, min_train=0)
    capped = sample_fill_cells(
        cells, existing.latitude, existing.longitude, target=20, n=25, seed=0
    )
    assert len(capped) == 25
    per_cell = capped.groupby("cell").agg(had=("cell_had", "first"), got=("latitude", "size"))
    final = per_cell.had + per_cell.got
    assert final.max() - final.min() <= 1  # water-filled: the thinnest cells end level
    with pytest.raises(UserError):
        sample_fill_cells(cells, existing.latitude, existing.longitude, target=0)


def test_sample_coords_cli(tmp_path, capsys):
    out = tmp_path / "coords.csv"
    assert main(["sample-coords", "--n", "50", "--out", str(out), "--seed", "3"]) == 0
    assert (
        list(pd.read_csv(out).columns) == ["latitude", "longitude"] and len(pd.read_csv(out)) == 50
    )
    data = make_dataset(tmp_path / "ds")
    filled = tmp_path / "fill.csv"
    assert (
        main(
            [
                "sample-coords",
                "--fill-cells",
                "3",
                "--dataset",
                str(data),
                "--cell-km",
                "150",
                "--out",
                str(filled),
            ]
        )
        == 0
    )
    assert len(pd.read_csv(filled)) > 0
    assert main(["sample-coords", "--out", str(out)]) == 2
    assert "give --n" in capsys.readouterr().err
