"""A short fit on each grid kind other than squares: it trains, tests, and its checkpoint keeps
the cells' parent levels and the side the hybrid's offsets are measured in."""

import math

import numpy as np
import pytest

from geoguesser.config import GridSettings
from geoguesser.data.enrich import prepare
from geoguesser.data.validate import load_locations
from geoguesser.geo.borders import load_border
from geoguesser.geo.splits import split_locations
from geoguesser.inference.predict import predict_table
from geoguesser.model.checkpoint import load_checkpoint
from geoguesser.model.geography import Geography
from geoguesser.training.fit import train
from helpers.configs import tiny_config

KINDS = {
    "quadtree": dict(kind="quadtree", max_train=8, cell_km=200),
    "voronoi": dict(kind="voronoi", cells=8),
    "regions": dict(kind="regions", max_train=10, min_region_train=3),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_short_hybrid_fit_on_each_kind(synthetic_dir, tmp_path, kind):
    border = load_border()
    locations, _ = load_locations([synthetic_dir], border=border)
    locations = split_locations(locations, fractions=(0.7, 0.15, 0.15), seed=0)
    table, cells, scaler = prepare(locations, border, grid=GridSettings(**KINDS[kind]))
    config = tiny_config(objective="hybrid", max_epochs=1, freeze_epochs=0)
    result = train(config, table, cells, scaler, tmp_path, border)
    assert math.isfinite(result.test["test/mean_km"])
    model = load_checkpoint(result.last_checkpoint)
    geography = model.geography
    expected = Geography.of(cells, scaler, border)
    assert geography.grid["kind"] == kind and geography.cell_side_m == expected.cell_side_m
    assert geography.levels == expected.levels
    rows = table[table.split == "test"]
    predicted = predict_table(model, rows, progress=False)
    assert np.isfinite(predicted.pred_lat).all() and len(predicted) == len(rows)
