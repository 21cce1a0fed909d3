"""Points to collect Street View data at: uniform over the country, or filling thin grid cells.

More data was the original team's best regularizer, and a classifier needs examples in
every cell: `sample_fill_cells` asks for points where the existing datasets are thin, up to
a target per cell. Points are uniform by area (drawn in the projected plane, tested against
the border in degrees, where its edges are straight) and deterministic for a seed.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from geoguesser.errors import UserError
from geoguesser.geo.coords import DEFAULT_CRS, to_latlon, to_projected


def _uniform(polygon_xy, polygon_deg, n: int, rng: np.random.Generator, crs: str):
    minx, miny, maxx, maxy = polygon_xy.bounds
    shapely.prepare(polygon_deg)
    lats, lons, have = [], [], 0
    while have < n:
        batch = max(64, 2 * (n - have))
        lat, lon = to_latlon(rng.uniform(minx, maxx, batch), rng.uniform(miny, maxy, batch), crs)
        keep = shapely.contains_xy(polygon_deg, lon, lat)
        lats.append(lat[keep])
        lons.append(lon[keep])
        have += int(keep.sum())
    return np.concatenate(lats)[:n], np.concatenate(lons)[:n]


def sample_uniform(
    border: BaseGeometry, n: int, seed: int = 0, crs: str = DEFAULT_CRS
) -> pd.DataFrame:
    """n points uniform by area over the country."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    border_xy = gpd.GeoSeries([border], crs="EPSG:4326").to_crs(crs).iloc[0]
    lat, lon = _uniform(border_xy, border, n, np.random.default_rng(seed), crs)
    return pd.DataFrame({"latitude": lat, "longitude": lon})


def _water_fill(have: np.ndarray, target: int, n: int) -> np.ndarray:
    """How many points each cell gets when n cannot reach every target: emptiest cells first."""
    level = next(lv for lv in range(target, -1, -1) if np.maximum(lv - have, 0).sum() <= n)
    grant = np.maximum(level - have, 0)
    below = np.flatnonzero(have + grant < target)
    order = below[np.argsort(have[below] + grant[below], kind="stable")]
    grant[order[: n - grant.sum()]] += 1
    return grant


def sample_fill_cells(
    cells, existing_lat, existing_lon, target: int, n: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Points in the cells holding fewer than `target` existing locations, up to the target.

    cells: the candidate cells of a grid (make_cells output). With `n`, the total is capped
    and the emptiest cells are raised first.
    """
    if target < 1:
        raise UserError(f"--fill-cells must be at least 1, got {target}")
    crs = cells.attrs.get("crs", DEFAULT_CRS)
    polygons_xy = cells.geometry.to_crs(crs).to_numpy()
    have = np.zeros(len(cells), dtype=int)
    x, y = to_projected(existing_lat, existing_lon, crs)
    if len(x):
        point_idx, cell_idx = shapely.STRtree(polygons_xy).query(
            shapely.points(x, y), predicate="intersects"
        )
        first = np.unique(point_idx, return_index=True)[1]
        np.add.at(have, cell_idx[first], 1)
    grant = np.maximum(target - have, 0)
    if n is not None and grant.sum() > n:
        grant = _water_fill(have, target, n)
    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame(columns=["latitude", "longitude", "cell", "cell_had"])]
    for i in np.flatnonzero(grant):
        lat, lon = _uniform(polygons_xy[i], cells.geometry.iloc[i], int(grant[i]), rng, crs)
        frames.append(
            pd.DataFrame({"latitude": lat, "longitude": lon, "cell": i, "cell_had": have[i]})
        )
    return pd.concat(frames, ignore_index=True).astype({"cell": int, "cell_had": int})
