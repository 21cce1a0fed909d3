"""Grid cells, the classes of the classification objective, and assigning locations to them.

`grid.kind` chooses the cells' shapes: squares of the projected CRS (equal-area, unlike
squares in degrees) cut to the country, made here; or cells that follow the data and the
map, each kind in its own module (quadtree.py, voronoi_cells.py, regions.py) and sharing
cell_frame.py. `build_cells` dispatches on the settings. A cell is a class only if it holds
at least `grid.min_train` training locations: a class never seen in training cannot be
learnt. Each cell carries three centroids a prediction can be decoded to: the geometric
centroid of its land part, that centroid moved onto land when it falls in the sea or abroad
("clipped"), and the mean of its training locations ("weighted", which follows the roads the
Street View car could drive).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from geoguesser.atomic import write_text
from geoguesser.config import CENTROID_KINDS, GridSettings
from geoguesser.errors import UserError
from geoguesser.geo.cell_frame import centroid_columns, first_hit, parent_columns
from geoguesser.geo.coords import DEFAULT_CRS, to_projected


def candidate_squares(
    border_xy: BaseGeometry, cell_km: float | None, cell_deg: float | None, crs: str
):
    """Candidate squares covering the border's bounds, with their row and column numbers."""
    if (cell_km is None) == (cell_deg is None):
        raise UserError("give exactly one of cell_km and cell_deg")
    size = cell_km * 1000.0 if cell_km is not None else cell_deg
    if size is None or size <= 0:
        raise UserError(
            f"cell size must be positive, got {cell_km if cell_km is not None else cell_deg}"
        )
    if cell_km is not None:
        minx, miny, maxx, maxy = border_xy.bounds
    else:
        border_deg = gpd.GeoSeries([border_xy], crs=crs).to_crs("EPSG:4326").iloc[0]
        minx, miny, maxx, maxy = border_deg.bounds
    # Anchor at multiples of the size so the same size always gives the same grid.
    cols = np.arange(np.floor(minx / size), np.ceil(maxx / size)).astype(np.int64)
    rows = np.arange(np.floor(miny / size), np.ceil(maxy / size)).astype(np.int64)
    col, row = (a.ravel() for a in np.meshgrid(cols, rows))
    squares = shapely.box(col * size, row * size, (col + 1) * size, (row + 1) * size)
    if cell_deg is not None:  # squares in degrees, bent into the projected plane
        squares = shapely.segmentize(squares, size / 8)
        squares = gpd.GeoSeries(squares, crs="EPSG:4326").to_crs(crs).to_numpy()
    return squares, row, col


def make_cells(
    border: BaseGeometry,
    train_lat,
    train_lon,
    cell_km: float | None = 50.0,
    cell_deg: float | None = None,
    crs: str = DEFAULT_CRS,
    min_train: int = 1,
) -> gpd.GeoDataFrame:
    """All candidate cells with their centroids; `label` is the class id, or -1 if dropped.

    Only training locations decide which cells are kept and where weighted centroids lie.
    A training location outside every cell counts for the nearest one.
    """
    if cell_deg is not None:
        cell_km = None
    land, row, col = _land_squares(border, cell_km, cell_deg, crs)

    train_x, train_y = to_projected(train_lat, train_lon, crs)
    if len(train_x) == 0:
        raise UserError("no training locations to build the grid from")
    owner = first_hit(shapely.STRtree(land), shapely.points(train_x, train_y))
    n_train = np.bincount(owner, minlength=len(land))

    order = np.lexsort((col, -row))  # north to south, west to east: a stable reading order
    land, row, col, n_train = land[order], row[order], col[order], n_train[order]
    owner = np.argsort(order)[owner]
    kept = n_train >= min_train
    label = np.where(kept, np.cumsum(kept) - 1, -1)

    columns = {
        "label": label,
        "row": row,
        "col": col,
        "n_train": n_train,
        "area_km2": shapely.area(land) / 1e6,
    }
    columns.update(centroid_columns(land, owner, train_x, train_y, n_train, kept, crs))
    cells = gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(land, crs=crs).to_crs("EPSG:4326"))
    cells.attrs.update(
        {"crs": crs, "cell_km": cell_km, "cell_deg": cell_deg, "min_train": min_train}
    )
    return cells


def build_cells(border: BaseGeometry, train_lat, train_lon, grid: GridSettings, crs: str):
    """The cells of `grid.kind` from the training locations (what step 02 writes)."""
    if len(np.atleast_1d(train_lat)) == 0:
        raise UserError("no training locations to build the grid from")
    if grid.kind == "square":
        cells = make_cells(
            border, train_lat, train_lon, grid.cell_km, grid.cell_deg, crs, grid.min_train
        )
        cells.attrs["kind"] = "square"
        return cells
    from geoguesser.geo import quadtree, regions, voronoi_cells

    make = {
        "quadtree": quadtree.quadtree_cells,
        "voronoi": voronoi_cells.voronoi_cells,
        "regions": regions.region_cells,
    }[grid.kind]
    train_x, train_y = to_projected(train_lat, train_lon, crs)
    cells = make(border, train_x, train_y, grid, crs)
    cells.attrs.update(grid.kind_settings())
    return cells


def _land_squares(
    border: BaseGeometry, cell_km: float | None, cell_deg: float | None, crs: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The squares' land parts (projected) with their row and column: squares all at sea go."""
    border_xy = gpd.GeoSeries([border], crs="EPSG:4326").to_crs(crs).iloc[0]
    shapely.prepare(border_xy)
    squares, row, col = candidate_squares(border_xy, cell_km, cell_deg, crs)
    touching = shapely.intersects(border_xy, squares)
    squares, row, col = squares[touching], row[touching], col[touching]
    land = shapely.intersection(squares, border_xy)
    keep = ~shapely.is_empty(land) & (shapely.area(land) > 0)
    land, row, col = land[keep], row[keep], col[keep]
    if len(land) == 0:
        raise UserError("the grid does not touch the border: check the border file and the CRS")
    return land, row, col


def kept_cells(cells: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The cells that are classes, ordered by label."""
    return cells[cells.label >= 0].sort_values("label").reset_index(drop=True)


def assign_cells(cells: gpd.GeoDataFrame, lat, lon) -> np.ndarray:
    """Class label of each location: the kept cell holding it, else the nearest kept cell."""
    classes = kept_cells(cells)
    crs = cells.attrs.get("crs", DEFAULT_CRS)
    polygons = classes.geometry.to_crs(crs).to_numpy()
    x, y = to_projected(lat, lon, crs)
    index = first_hit(shapely.STRtree(polygons), shapely.points(x, y))
    return classes.label.to_numpy()[index]


def write_cells(cells: gpd.GeoDataFrame, path: str | Path) -> Path:
    """GeoJSON in EPSG:4326 (as the format requires) with the grid's settings alongside."""
    data = json.loads(cells.to_json(drop_id=True))
    data["geoguesser"] = dict(cells.attrs)
    return write_text(path, json.dumps(data))


def read_cells(path: str | Path) -> gpd.GeoDataFrame:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        cells = gpd.GeoDataFrame.from_features(data["features"], crs="EPSG:4326")
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a cells file written by geoguesser ({exc})") from None
    cells.attrs.update(data.get("geoguesser", {}))
    for column in ("label", "row", "col", "n_train", *parent_columns(cells.columns)):
        cells[column] = cells[column].astype(np.int64)
    return cells


def centroid_table(cells: gpd.GeoDataFrame, kind: str = "weighted") -> pd.DataFrame:
    """Per-class centroid coordinates of one kind, indexed by label."""
    if kind not in CENTROID_KINDS:
        raise UserError(
            f"unknown centroid kind {kind!r}; choose one of {', '.join(CENTROID_KINDS)}"
        )
    classes = kept_cells(cells)
    return classes[["label", f"{kind}_lat", f"{kind}_lon", f"{kind}_x", f"{kind}_y"]].set_index(
        "label"
    )
