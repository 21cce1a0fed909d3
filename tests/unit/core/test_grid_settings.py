"""The grid section: a kind's own keys, the regions file, and what the cells file records."""

import json

import pytest

from geoguesser.config import GridSettings, load_settings
from geoguesser.errors import UserError


@pytest.fixture
def labelled(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data.csv").write_text("uuid,latitude,longitude\n")
    return [f"data.dataset_dirs=[{tmp_path / 'data'}]"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["grid.kind=hexagons"], "grid.kind: Input should be 'square', 'quadtree'"),
        (["grid.cells=40"], "grid: cells applies to kind voronoi, not square"),
        (
            ["grid.kind=voronoi", "grid.max_train=9"],
            "max_train applies to kind quadtree or regions",
        ),
        (
            ["grid.kind=regions", "grid.cell_deg=0.5"],
            "cell_deg applies to kind square, not regions",
        ),
        (["grid.kind=quadtree", "grid.split_at=mean"], "grid.split_at: Input should be 'middle'"),
    ],
)
def test_settings_that_contradict_the_kind_are_one_line(labelled, overrides, message):
    with pytest.raises(UserError, match=message) as caught:
        load_settings(None, labelled + overrides)
    assert len(str(caught.value).splitlines()) == 1


def test_a_regions_file_must_be_polygons_on_the_border(labelled, tmp_path):
    broken = tmp_path / "broken.geojson"
    broken.write_text("{not json")
    points = tmp_path / "points.geojson"
    points.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {},
         "geometry": {"type": "Point", "coordinates": [16, 45]}}
    ]}))  # fmt: skip
    away = tmp_path / "away.geojson"
    away.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "sea"}, "geometry": {"type": "Polygon",
         "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}}
    ]}))  # fmt: skip
    cases = {
        broken: "not a readable vector file",
        points: "no polygons",
        away: "no region overlaps the shipped Croatia border",
        tmp_path / "none.gpkg": "regions file not found",
    }
    for path, message in cases.items():
        with pytest.raises(UserError, match=f"grid.*{message}"):
            load_settings(None, [*labelled, "grid.kind=regions", f"grid.regions={path}"])


def test_kind_settings_fill_in_the_kinds_defaults_only(labelled):
    assert GridSettings().kind_settings() == {"kind": "square"}
    assert GridSettings(kind="quadtree", max_train=50).kind_settings() == {
        "kind": "quadtree", "max_train": 50, "min_cell_km": 5.0, "split_at": "middle"
    }  # fmt: skip
    regions = GridSettings(kind="regions").kind_settings()
    assert regions["regions"] == "counties" and regions["min_region_train"] == 10
    # A run's saved config (every key, nulls included) loads again.
    saved = load_settings(None, [*labelled, "grid.kind=voronoi"]).to_yaml_dict()
    assert GridSettings(**saved["grid"]).kind_settings()["cells"] == 64
