"""Grid cells, the classes of the classification objective, and assigning locations to them.

Cells are squares of the projected CRS (equal-area, unlike squares in degrees) cut to the
country. A cell is a class only if it holds at least one training location: a class never
seen in training cannot be learnt. Each cell carries three centroids a prediction can be
decoded to: the geometric centroid of its land part, that centroid moved onto land when it
falls in the sea or abroad ("clipped"), and the mean of its training locations ("weighted",
which follows the roads the Street View car could drive).
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
from geoguesser.config import CENTROID_KINDS
from geoguesser.errors import UserError
from geoguesser.geo.coords import DEFAULT_CRS, to_latlon, to_projected


def _squares(border_xy: BaseGeometry, cell_km: float | None, cell_deg: float | None, crs: str):
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


def _first_hit(tree: shapely.STRtree, points: np.ndarray) -> np.ndarray:
    """Index of a polygon holding each point, else of the nearest polygon (ties: lowest index)."""
    hit = np.full(len(points), -1, dtype=np.int64)
    point_idx, poly_idx = tree.query(points, predicate="intersects")
    order = np.lexsort((poly_idx, point_idx))
    point_idx, poly_idx = point_idx[order], poly_idx[order]
    first = np.unique(point_idx, return_index=True)[1]
    hit[point_idx[first]] = poly_idx[first]
    missing = np.flatnonzero(hit < 0)
    if len(missing):
        near_point, near_poly = tree.query_nearest(points[missing], all_matches=False)
        hit[missing[near_point]] = near_poly
    return hit


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
    owner = _first_hit(shapely.STRtree(land), shapely.points(train_x, train_y))
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
    columns.update(_centroid_columns(land, owner, train_x, train_y, n_train, kept, crs))
    cells = gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(land, crs=crs).to_crs("EPSG:4326"))
    cells.attrs.update(
        {"crs": crs, "cell_km": cell_km, "cell_deg": cell_deg, "min_train": min_train}
    )
    return cells


def _land_squares(
    border: BaseGeometry, cell_km: float | None, cell_deg: float | None, crs: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The squares' land parts (projected) with their row and column: squares all at sea go."""
    border_xy = gpd.GeoSeries([border], crs="EPSG:4326").to_crs(crs).iloc[0]
    shapely.prepare(border_xy)
    squares, row, col = _squares(border_xy, cell_km, cell_deg, crs)
    touching = shapely.intersects(border_xy, squares)
    squares, row, col = squares[touching], row[touching], col[touching]
    land = shapely.intersection(squares, border_xy)
    keep = ~shapely.is_empty(land) & (shapely.area(land) > 0)
    land, row, col = land[keep], row[keep], col[keep]
    if len(land) == 0:
        raise UserError("the grid does not touch the border: check the border file and the CRS")
    return land, row, col


def _centroid_columns(land, owner, train_x, train_y, n_train, kept, crs: str) -> dict:
    """The three centroids of each cell (see the module's docstring), projected and in degrees."""
    centroid = shapely.centroid(land)
    cx, cy = shapely.get_x(centroid), shapely.get_y(centroid)
    on_land = shapely.contains_xy(land, cx, cy)
    nearest = shapely.get_point(shapely.shortest_line(centroid, land), 1)
    clip_x = np.where(on_land, cx, shapely.get_x(nearest))
    clip_y = np.where(on_land, cy, shapely.get_y(nearest))
    with np.errstate(invalid="ignore", divide="ignore"):
        weight_x = np.bincount(owner, weights=train_x, minlength=len(land)) / n_train
        weight_y = np.bincount(owner, weights=train_y, minlength=len(land)) / n_train
    columns = {}
    for kind, (x, y) in {
        "centroid": (cx, cy),
        "clipped": (clip_x, clip_y),
        "weighted": (np.where(kept, weight_x, np.nan), np.where(kept, weight_y, np.nan)),
    }.items():
        lat, lon = to_latlon(x, y, crs)
        columns.update({f"{kind}_x": x, f"{kind}_y": y, f"{kind}_lat": lat, f"{kind}_lon": lon})
    return columns


def kept_cells(cells: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The cells that are classes, ordered by label."""
    return cells[cells.label >= 0].sort_values("label").reset_index(drop=True)


def assign_cells(cells: gpd.GeoDataFrame, lat, lon) -> np.ndarray:
    """Class label of each location: the kept cell holding it, else the nearest kept cell."""
    classes = kept_cells(cells)
    crs = cells.attrs.get("crs", DEFAULT_CRS)
    polygons = classes.geometry.to_crs(crs).to_numpy()
    x, y = to_projected(lat, lon, crs)
    index = _first_hit(shapely.STRtree(polygons), shapely.points(x, y))
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
    for column in ("label", "row", "col", "n_train"):
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
