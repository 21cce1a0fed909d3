import numpy as np
import pytest

from geoguesser.data.enrich import ENRICHED_COLUMNS, enrich
from geoguesser.geo.borders import load_border
from geoguesser.geo.grid import make_cells
from geoguesser.geo.splits import split_locations


def test_enriched_table_has_every_column_and_train_only_statistics(locations):  # noqa: F811
    frame = split_locations(locations, seed=0).assign(dataset_dir="/data/x")
    train = frame[frame.split == "train"]
    cells = make_cells(load_border(), train.latitude, train.longitude, cell_km=40)
    table, scaler = enrich(frame, cells)
    assert list(table.columns) == ENRICHED_COLUMNS
    is_train = table.split == "train"
    assert table.loc[is_train, "x_norm"].min() == pytest.approx(0) and table.loc[
        is_train, "x_norm"
    ].max() == pytest.approx(1)
    assert scaler.x_min == pytest.approx(table.loc[is_train, "crs_x"].min())
    # The centroid columns are those of each row's cell.
    by_label = cells[cells.label >= 0].set_index("label")
    assert np.allclose(table.weighted_lat, by_label.loc[table.label, "weighted_lat"])
    assert np.allclose(table.clipped_lon, by_label.loc[table.label, "clipped_lon"])
