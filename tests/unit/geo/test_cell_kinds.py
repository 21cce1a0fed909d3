"""Every grid kind on synthetic locations: coverage, training-only fitting, centroids, drop rule,
parent levels, the cells file and the checkpoint's Geography."""

import numpy as np
import pandas as pd
import pytest
import shapely

from geoguesser.config import GridSettings
from geoguesser.data.enrich import prepare
from geoguesser.geo.borders import load_border
from geoguesser.geo.cell_frame import parent_columns
from geoguesser.geo.coords import MinMaxScaler, to_projected
from geoguesser.geo.grid import (
    assign_cells,
    build_cells,
    kept_cells,
    make_cells,
    read_cells,
    write_cells,
)
from geoguesser.geo.sampling import sample_uniform
from geoguesser.model.geography import Geography

CRS = "EPSG:3766"
KINDS = {
    "quadtree": dict(kind="quadtree", max_train=40),
    "quadtree-median": dict(kind="quadtree", max_train=40, split_at="median", cell_km=400),
    "voronoi": dict(kind="voronoi", cells=24),
    "regions": dict(kind="regions", max_train=60, min_region_train=15),
}


@pytest.fixture(scope="module")
def border():
    return load_border()


@pytest.fixture(scope="module")
def train(border):
    points = sample_uniform(border, 800, seed=3)
    return points.latitude.to_numpy(), points.longitude.to_numpy()


@pytest.fixture(scope="module", params=list(KINDS))
def made(request, border, train):
    grid = GridSettings(**KINDS[request.param])
    return grid, build_cells(border, *train, grid, CRS)


def test_every_training_location_has_a_kept_cell_that_counts_it(made, train):
    grid, cells = made
    labels = assign_cells(cells, *train)
    classes = kept_cells(cells)
    assert set(labels) == set(classes.label)  # min_train 1: every class holds a location
    assert np.bincount(labels, minlength=len(classes)).tolist() == classes.n_train.tolist()
    # A location inside a kept cell gets that cell.
    x, y = to_projected(*train, CRS)
    shapes = classes.to_crs(CRS).geometry.to_numpy()[labels]
    inside = shapely.contains_xy(shapes, x, y) | (
        shapely.distance(shapes, shapely.points(x, y)) < 1
    )
    assert inside.mean() > 0.99  # the rest lie outside every cell (the border's edge)
    assert cells.attrs["kind"] == grid.kind


def test_weighted_centroids_are_the_means_of_each_cells_training_locations(made, train):
    _, cells = made
    classes = kept_cells(cells)
    x, y = to_projected(*train, CRS)
    labels = assign_cells(cells, *train)
    means = pd.DataFrame({"x": x, "y": y, "label": labels}).groupby("label").mean()
    assert np.allclose(classes.weighted_x, means.x) and np.allclose(classes.weighted_y, means.y)
    land = classes.to_crs(CRS).geometry.to_numpy()
    clipped = shapely.points(classes.clipped_x, classes.clipped_y)
    assert (shapely.distance(land, clipped) < 1e-3).all()
    assert classes[["centroid_lat", "centroid_lon"]].notna().all().all()


def test_parent_levels_group_kept_cells_and_nest(made):
    grid, cells = made
    classes = kept_cells(cells)
    levels = parent_columns(classes.columns)
    if grid.kind == "regions" and not levels:
        pytest.skip("no region was split here")  # covered by test_big_regions_are_split
    assert levels and levels == [f"parent_{i}" for i in range(1, len(levels) + 1)]
    finer = classes.label.to_numpy()
    for level in levels:
        ids = classes[level].to_numpy()
        assert ids.dtype == np.int64 and (ids >= 0).all()
        assert 1 < len(np.unique(ids)) < len(np.unique(finer))  # groups two cells somewhere
        # Nested: cells of one finer group share their coarser group.
        assert (pd.Series(ids).groupby(finer).nunique() == 1).all()
        finer = ids
    assert (cells.loc[cells.label < 0, levels] == -1).all().all()


def test_val_and_test_locations_do_not_move_the_cells(made, border, train):
    grid, cells = made
    far = sample_uniform(border, 300, seed=11)
    locations = pd.concat(
        [
            pd.DataFrame({"latitude": train[0], "longitude": train[1], "split": "train"}),
            far.assign(split=np.where(np.arange(300) % 2, "val", "test")),
        ],
        ignore_index=True,
    ).assign(uuid=lambda f: f.index.astype(str), dataset_dir="d")
    _, again, _ = prepare(locations, border, crs=CRS, grid=grid)
    assert again.geometry.equals(cells.geometry) and again.label.equals(cells.label)


def test_cells_file_and_geography_round_trip(made, tmp_path, train):
    grid, cells = made
    write_cells(cells, tmp_path / "cells.geojson")
    again = read_cells(tmp_path / "cells.geojson")
    assert again.attrs == cells.attrs
    assert assign_cells(again, *train).tolist() == assign_cells(cells, *train).tolist()
    for level in parent_columns(cells.columns):
        assert again[level].dtype == np.int64 and again[level].tolist() == cells[level].tolist()
    scaler = MinMaxScaler.fit(*to_projected(*train, CRS), crs=CRS)
    geography = Geography.of(again, scaler)
    loaded = Geography.from_dict(geography.to_dict())
    assert loaded.cells == geography.cells and loaded.grid["kind"] == grid.kind
    classes = kept_cells(cells)
    for level in parent_columns(classes.columns):  # the parents travel with the cells
        assert loaded.cells[level] == classes[level].tolist()
    assert loaded.levels == geography.levels  # and the hierarchy's levels made of them
    assert len(geography.levels) == len(parent_columns(classes.columns))
    side = np.sqrt(np.median(classes.area_km2)) * 1000
    assert loaded.cell_side_m == pytest.approx(side)


def test_the_drop_rule_applies_to_every_kind(border, train):
    for settings in KINDS.values():
        cells = build_cells(border, *train, GridSettings(**settings, min_train=12), CRS)
        kept = cells.label >= 0
        assert (cells.n_train[kept] >= 12).all() and (cells.n_train[~kept] < 12).all()
        assert kept_cells(cells).label.tolist() == list(range(int(kept.sum())))


def test_square_kind_is_exactly_the_square_grid(border, train):
    cells = build_cells(border, *train, GridSettings(cell_km=40), CRS)
    before = make_cells(border, *train, cell_km=40, crs=CRS)
    assert cells.drop(columns="geometry").equals(before.drop(columns="geometry"))
    assert cells.geometry.equals(before.geometry) and not parent_columns(cells.columns)
    assert Geography.of(cells, MinMaxScaler.fit([0, 1], [0, 1], crs=CRS)).grid == {
        "cell_km": 40.0, "cell_deg": None, "min_train": 1
    }  # fmt: skip


def test_quadtree_splits_crowded_cells_down_to_the_smallest_side(border, train):
    grid = GridSettings(kind="quadtree", max_train=30, min_cell_km=20)
    classes = kept_cells(build_cells(border, *train, grid, CRS))
    crowded = classes[classes.n_train > 30]
    assert (classes.side_km >= 20).all()
    assert (crowded.side_km < 40).all()  # a crowded cell is one that could not be split again
    coarse = kept_cells(build_cells(border, *train, GridSettings(kind="quadtree"), CRS))
    assert len(classes) > len(coarse)


def test_voronoi_makes_about_the_asked_number_of_cells(border, train):
    cells = build_cells(border, *train, GridSettings(kind="voronoi", cells=30), CRS)
    assert 25 <= len(kept_cells(cells)) <= 30


def test_regions_are_counties_merged_when_small_and_split_when_big(border, train):
    whole = GridSettings(kind="regions", max_train=10_000, min_region_train=1)
    plain = build_cells(border, *train, whole, CRS)
    assert len(plain) == 21 and plain.region.nunique() == 21 and (plain.n_train > 0).all()
    merged = build_cells(
        border, *train, GridSettings(kind="regions", max_train=10_000, min_region_train=60), CRS
    )
    assert len(merged) < 21 and (merged.n_train >= 60).all()
    split = build_cells(
        border, *train, GridSettings(kind="regions", max_train=25, min_region_train=1), CRS
    )
    assert len(split) > 21 and split.parent_1.nunique() == 21
    assert (split.groupby("parent_1").region.nunique() == 1).all()  # parts of one county
