import numpy as np
import pytest
import shapely

from geoguesser.geo.borders import load_border
from geoguesser.geo.coords import to_projected
from geoguesser.geo.grid import (
    assign_cells,
    centroid_table,
    kept_cells,
    make_cells,
    read_cells,
    write_cells,
)


@pytest.fixture(scope="module")
def border():
    return load_border()


def test_cells_are_projected_squares_cut_to_the_country(border):
    lat, lon = np.array([45.815, 45.555]), np.array([15.982, 18.696])
    cells = make_cells(border, lat, lon, cell_km=50)
    # Every candidate is land; whole inland squares are exactly 50 x 50 km.
    assert (cells.area_km2 > 0).all() and cells.area_km2.max() == pytest.approx(2500, rel=1e-6)
    # The land parts tile the country: their areas add up to its area.
    total = shapely.area(cells.to_crs(3766).geometry.to_numpy()).sum() / 1e6
    assert total == pytest.approx(sum(cells.area_km2), rel=1e-3)
    assert 54_000 < total < 58_000


def test_only_cells_with_training_locations_are_classes(border):
    lat, lon = np.array([45.815, 45.816, 45.555]), np.array([15.982, 15.983, 18.696])
    cells = make_cells(border, lat, lon, cell_km=50)
    classes = kept_cells(cells)
    assert classes.label.tolist() == [0, 1]
    assert sorted(classes.n_train.tolist()) == [1, 2]
    assert (cells[cells.label < 0].n_train == 0).all()


def test_weighted_centroid_is_the_mean_of_training_locations_in_projected_space(border):
    lat, lon = np.array([45.80, 45.83]), np.array([15.95, 16.00])
    cells = make_cells(border, lat, lon, cell_km=100)
    (cell,) = kept_cells(cells).itertuples()
    x, y = to_projected(lat, lon)
    assert (cell.weighted_x, cell.weighted_y) == pytest.approx((x.mean(), y.mean()), abs=1e-6)


def test_clipped_centroid_lies_on_the_cells_land(border):
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(42.5, 46.5, 4000), rng.uniform(13.5, 19.4, 4000)
    keep = shapely.intersects_xy(border, lon, lat)
    cells = make_cells(border, lat[keep], lon[keep], cell_km=20)
    land = cells.to_crs(3766).geometry.to_numpy()
    clipped = shapely.points(cells.clipped_x, cells.clipped_y)
    assert (shapely.distance(land, clipped) < 1e-3).all()
    centroid_in = shapely.contains_xy(land, cells.centroid_x, cells.centroid_y)
    assert not centroid_in.all()  # some centroids fall in the sea or abroad on a 20 km grid
    same = np.isclose(cells.clipped_x, cells.centroid_x) & np.isclose(
        cells.clipped_y, cells.centroid_y
    )
    assert (same == centroid_in).all()


def test_validation_locations_do_not_create_classes(border):
    train_lat, train_lon = np.array([45.815]), np.array([15.982])
    cells = make_cells(border, train_lat, train_lon, cell_km=50)
    # An Osijek location (not in training) still gets a class: the nearest kept cell.
    labels = assign_cells(cells, [45.555, 45.815], [18.696, 15.982])
    assert labels.tolist() == [0, 0]


def test_every_location_gets_the_cell_holding_it_or_the_nearest(border):
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(42.5, 46.5, 3000), rng.uniform(13.5, 19.4, 3000)
    cells = make_cells(border, lat, lon, cell_km=30)
    labels = assign_cells(cells, lat, lon)
    classes = kept_cells(cells)
    polygons = classes.to_crs(3766).geometry.to_numpy()
    x, y = to_projected(lat, lon)
    points = shapely.points(x, y)
    distances = shapely.distance(polygons[labels], points)
    nearest = np.array([shapely.distance(polygons, p).min() for p in points[:300]])
    assert np.allclose(distances[:300], nearest)
    assert (labels >= 0).all() and labels.max() == len(classes) - 1


def test_degree_spacing_option_and_file_round_trip(border, tmp_path):
    lat, lon = np.array([45.815, 43.52, 45.555]), np.array([15.982, 16.47, 18.696])
    cells = make_cells(border, lat, lon, cell_deg=0.5)
    assert cells.attrs["cell_deg"] == 0.5 and cells.attrs["cell_km"] is None
    write_cells(cells, tmp_path / "cells.geojson")
    again = read_cells(tmp_path / "cells.geojson")
    assert again.attrs == cells.attrs
    assert again.label.tolist() == cells.label.tolist()
    assert np.allclose(again.weighted_lat.fillna(0), cells.weighted_lat.fillna(0))
    assert assign_cells(again, lat, lon).tolist() == assign_cells(cells, lat, lon).tolist()
    table = centroid_table(again, "clipped")
    assert table.index.tolist() == [0, 1, 2]
