"""What every kind of cell shares: owners of points, the three centroids, the drop rule, parents.

A kind (square, quadtree, voronoi, regions) only decides the cells' shapes, in the projected
CRS and in a stable order; `cell_frame` turns them into the cells table every stage reads:
label (class id, -1 if dropped), n_train, area, the three centroid kinds and, when the kind
has coarser levels, the `parent_1`, `parent_2`, ... columns (see `parent_levels`).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geoguesser.geo.coords import to_latlon

PARENT_PREFIX = "parent_"


def first_hit(tree: shapely.STRtree, points: np.ndarray) -> np.ndarray:
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


def centroid_columns(land, owner, train_x, train_y, n_train, kept, crs: str) -> dict:
    """The three centroids of each cell (see grid.py's docstring), projected and in degrees."""
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


def clip_to(shapes: np.ndarray, area_xy) -> tuple[np.ndarray, np.ndarray]:
    """The shapes' parts inside `area_xy` and which shapes kept a part (area above 0)."""
    shapely.prepare(area_xy)
    parts = shapely.intersection(shapes, area_xy)
    keep = ~shapely.is_empty(parts) & (shapely.area(parts) > 0)
    return parts[keep], keep


def parent_levels(groups: list[np.ndarray], kept: np.ndarray) -> dict[str, np.ndarray]:
    """`parent_1`, `parent_2`, ... from finest to coarsest: the levels that mean something.

    `groups[i]` gives every candidate cell a group id at the i-th coarser level. A level is
    kept only if it groups two kept cells somewhere and holds more than one group; ids are
    renumbered 0.. over the kept cells in order of first appearance, and dropped cells get -1.
    """
    columns = {}
    for group in groups:
        ids = pd.factorize(np.asarray(group)[kept])[0]
        if ids.max(initial=-1) + 1 < 2 or len(np.unique(ids)) == len(ids):
            continue
        column = np.full(len(kept), -1, dtype=np.int64)
        column[kept] = ids
        columns[f"{PARENT_PREFIX}{len(columns) + 1}"] = column
    return columns


def cell_frame(
    land: np.ndarray,
    train_x: np.ndarray,
    train_y: np.ndarray,
    crs: str,
    min_train: int,
    columns: dict,
    attrs: dict,
    groups: list[np.ndarray] = (),
) -> gpd.GeoDataFrame:
    """The cells table of projected shapes `land` (in their final order) and their owners.

    `columns` adds per-cell columns (row, col, region ...); `groups` the coarser levels'
    group ids of each cell, finest first (parent_levels). Training locations outside every
    cell count for the nearest one, as labels do.
    """
    owner = first_hit(shapely.STRtree(land), shapely.points(train_x, train_y))
    n_train = np.bincount(owner, minlength=len(land))
    kept = n_train >= min_train
    table = {"label": np.where(kept, np.cumsum(kept) - 1, -1), **columns, "n_train": n_train}
    table["area_km2"] = shapely.area(land) / 1e6
    table.update(centroid_columns(land, owner, train_x, train_y, n_train, kept, crs))
    table.update(parent_levels(list(groups), kept))
    cells = gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(land, crs=crs).to_crs("EPSG:4326"))
    cells.attrs.update({"crs": crs, **attrs, "min_train": min_train})
    return cells


def parent_columns(cells) -> list[str]:
    """The cells' parent levels in order, finest first: parent_1, parent_2, ..."""
    found = [c for c in cells if str(c).startswith(PARENT_PREFIX) and c[7:].isdigit()]
    return sorted(found, key=lambda c: int(c[len(PARENT_PREFIX) :]))


def projected(border, crs: str):
    """The border (EPSG:4326) in the projected CRS, prepared for many queries."""
    border_xy = gpd.GeoSeries([border], crs="EPSG:4326").to_crs(crs).iloc[0]
    shapely.prepare(border_xy)
    return border_xy


def reading_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """North to south, then west to east: the order cells of shapes without rows are kept in."""
    return np.lexsort((np.round(x, 3), -np.round(y, 3)))
