"""The per-location table training reads: labels, centroids, projected and normalized coordinates.

Everything fitted (the cells, the scaler) comes from the training split only, so the
validation and test rows are described with facts learnt without them.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from geoguesser.config import CENTROID_KINDS, GridSettings
from geoguesser.geo.coords import DEFAULT_CRS, MinMaxScaler, to_projected
from geoguesser.geo.grid import assign_cells, build_cells, kept_cells, make_cells

ENRICHED_COLUMNS = [
    "uuid", "latitude", "longitude", "split", "dataset_dir", "label",
    "centroid_lat", "centroid_lon", "clipped_lat", "clipped_lon", "weighted_lat", "weighted_lon",
    "crs_x", "crs_y", "x_norm", "y_norm",
]  # fmt: skip


def enrich(locations: pd.DataFrame, cells: gpd.GeoDataFrame) -> tuple[pd.DataFrame, MinMaxScaler]:
    """Add cell labels, centroid coordinates and projected/normalized x, y to split locations."""
    crs = cells.attrs.get("crs", DEFAULT_CRS)
    lat, lon = locations.latitude.to_numpy(), locations.longitude.to_numpy()
    label = assign_cells(cells, lat, lon)
    classes = kept_cells(cells).set_index("label")
    x, y = to_projected(lat, lon, crs)
    train = (locations.split == "train").to_numpy()
    scaler = MinMaxScaler.fit(x[train], y[train], crs=crs)
    x_norm, y_norm = scaler.transform(x, y)
    table = locations.assign(label=label, crs_x=x, crs_y=y, x_norm=x_norm, y_norm=y_norm)
    for kind in CENTROID_KINDS:
        for axis in ("lat", "lon"):
            table[f"{kind}_{axis}"] = classes[f"{kind}_{axis}"].to_numpy()[
                np.searchsorted(classes.index, label)
            ]
    return table[ENRICHED_COLUMNS].reset_index(drop=True), scaler


def prepare(
    locations: pd.DataFrame,
    border,
    cell_km: float | None = 50.0,
    cell_deg: float | None = None,
    crs: str = DEFAULT_CRS,
    min_train: int = 1,
    grid: GridSettings | None = None,
) -> tuple[pd.DataFrame, gpd.GeoDataFrame, MinMaxScaler]:
    """Steps 02 and 03 in one call, for scripts and tests: cells from training data, then enrich.

    With `grid` (any kind), its settings make the cells and the size arguments are unused.
    """
    train = locations[locations.split == "train"]
    if grid is not None:
        cells = build_cells(border, train.latitude, train.longitude, grid, crs)
    else:
        cells = make_cells(
            border, train.latitude, train.longitude, cell_km, cell_deg, crs, min_train
        )
    table, scaler = enrich(locations, cells)
    return table, cells, scaler
