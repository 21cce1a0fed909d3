"""Administrative regions: reading them, the region of a point, and cells made from them.

`load_regions("counties")` gives Croatia's 21 counties shipped in geo/assets (built by
scripts/build_counties.py from GeoNames, CC BY 4.0); any other spec is a polygon file read
with geopandas. `region_of` places points in them (outside every region: the nearest), which
the region accuracy of metrics.py counts.

`region_cells` makes classes of them, as PIGEON's semantic cells do: a region holding fewer
than `grid.min_region_train` training locations joins the neighbour (sharing a border,
within the same parent unit when the file names one) holding the fewest; a region holding
more than `grid.max_train` is split by k-means of its training locations into
ceil(n / max_train) parts shaped as Voronoi cells cut to the region. K-means rather than
PIGEON's OPTICS: it is seeded and deterministic, the number of parts follows from
`max_train` directly, and it labels no location as noise that would then need a cell.
Parents: `parent_1` the (merged) region each cell came from, `parent_2` its parent unit.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geoguesser.config import GridSettings, polygons_file
from geoguesser.errors import UserError
from geoguesser.geo.borders import ASSETS
from geoguesser.geo.cell_frame import cell_frame, clip_to, first_hit, projected, reading_order
from geoguesser.geo.coords import DEFAULT_CRS, to_projected
from geoguesser.geo.voronoi_cells import kmeans_centres, voronoi_parts

COUNTIES = ASSETS / "croatia-counties.geojson"
NAME_COLUMNS = ("region", "name", "NAME", "NAME_1", "shapeName")
NEIGHBOUR_M = 500.0  # regions this close share a border (the shipped ones are simplified)


@lru_cache(maxsize=4)
def load_regions(spec: str | Path = "counties", parent: str | None = None) -> gpd.GeoDataFrame:
    """The regions as a GeoDataFrame in EPSG:4326: `region` (a name), `parent`, geometry.

    The name is the file's first column of NAME_COLUMNS, else the row number; `parent` is
    the `parent` column's value (None: every region its own parent).
    """
    path = COUNTIES if str(spec) == "counties" else Path(spec)
    frame = polygons_file(path)
    if isinstance(frame, str):
        raise UserError(frame)
    if parent is not None and parent not in frame.columns:
        raise UserError(f"{path}: no column {parent!r} (grid.region_parent)")
    name = next((c for c in NAME_COLUMNS if c in frame.columns), None)
    names = frame[name].astype(str) if name else pd.Series(range(len(frame))).astype(str)
    parents = frame[parent].astype(str) if parent else names
    regions = gpd.GeoDataFrame(
        {"region": names.to_numpy(), "parent": parents.to_numpy()},
        geometry=frame.geometry.to_numpy(),
        crs="EPSG:4326",
    )
    return regions.reset_index(drop=True)


def region_of(regions: gpd.GeoDataFrame, lat, lon, crs: str = DEFAULT_CRS) -> np.ndarray:
    """Row of `regions` holding each point; outside every region, the nearest (in `crs`)."""
    x, y = to_projected(lat, lon, crs)
    polygons = regions.geometry.to_crs(crs).to_numpy()
    return first_hit(shapely.STRtree(polygons), shapely.points(x, y))


def _merge_small(shapes, n_train, parent, minimum: int) -> list[list[int]]:
    """Groups of region rows after the small ones joined a neighbour (module docstring)."""
    groups = [[i] for i in range(len(shapes))]
    shapes, n_train, parent = list(shapes), list(n_train), list(parent)
    alive = list(range(len(shapes)))
    while len(alive) > 1:
        small = [i for i in alive if n_train[i] < minimum]
        if not small:
            break
        i = min(small, key=lambda j: (n_train[j], j))
        others = [j for j in alive if j != i]
        near = [j for j in others if shapely.dwithin(shapes[i], shapes[j], NEIGHBOUR_M)]
        same = [j for j in near if parent[j] == parent[i]]
        pool = same or near
        if not pool:  # an island region: the nearest, inside its parent if possible
            pool = [j for j in others if parent[j] == parent[i]] or others
            pool = [min(pool, key=lambda j: (shapely.distance(shapes[i], shapes[j]), j))]
        j = min(pool, key=lambda k: (n_train[k], k))
        shapes[j] = shapely.union(shapes[j], shapes[i])
        n_train[j] += n_train[i]
        groups[j] += groups[i]
        alive.remove(i)
    return [groups[i] for i in alive]


def _split_big(shape, x, y, settings: dict) -> list:
    """The region's parts: itself, or Voronoi cells of k-means of its training locations."""
    k = int(np.ceil(len(x) / settings["max_train"]))
    if k < 2:
        return [shape]
    centres = kmeans_centres(x, y, k, settings["seed"])
    centres = centres[reading_order(centres[:, 0], centres[:, 1])]
    parts, _ = voronoi_parts(centres, shape)
    return list(parts)


def region_cells(border, train_x, train_y, grid: GridSettings, crs: str):
    """Cells from the regions of `grid.regions`, merged and split, as the cells table."""
    settings = grid.kind_settings()
    regions = load_regions(settings["regions"], settings["region_parent"])
    border_xy = projected(border, crs)
    shapes, keep = clip_to(regions.geometry.to_crs(crs).to_numpy(), border_xy)
    if len(shapes) == 0:
        raise UserError(f"{settings['regions']}: no region overlaps the border")
    regions = regions[keep].reset_index(drop=True)
    owner = first_hit(shapely.STRtree(shapes), shapely.points(train_x, train_y))
    n_train = np.bincount(owner, minlength=len(shapes))
    merged = _merge_small(shapes, n_train, regions["parent"].tolist(), settings["min_region_train"])
    land, columns = [], {"region": [], "region_id": [], "parent_unit": []}
    for index, rows in enumerate(merged):
        shape = shapely.union_all(shapes[rows])
        inside = np.isin(owner, rows)
        parts = _split_big(shape, train_x[inside], train_y[inside], settings)
        land += parts
        columns["region"] += [regions["region"][rows[0]]] * len(parts)
        columns["region_id"] += [index] * len(parts)
        columns["parent_unit"] += [regions["parent"][rows[0]]] * len(parts)
    groups = [np.array(columns["region_id"])]
    if settings["region_parent"]:
        groups.append(pd.factorize(np.array(columns["parent_unit"]))[0])
    minus = np.full(len(land), -1, dtype=np.int64)
    extra = {"row": minus, "col": minus, "region": np.array(columns["region"], dtype=object)}
    return cell_frame(
        np.array(land, dtype=object), train_x, train_y, crs, grid.min_train, extra, {}, groups
    )
