"""Quadtree cells: squares split into four while they hold too many training locations.

As OSV-5M builds its classes: dense places (Zagreb, the coast) get small cells, empty ones
(Lika's mountains) keep large ones, so classes hold similar numbers of examples. The tree
starts from the square grid of `grid.cell_km` (a large `cell_km` makes one root for the
whole country) and splits a box while it holds more than `grid.max_train` training
locations and both halves would keep a side of at least `grid.min_cell_km`. `split_at:
median` cuts at the training locations' medians (clamped so no side falls below the
minimum) instead of the middle, so the four children share the locations more evenly.

The cells' parents are their ancestors: `parent_k` is the box `k` levels above the deepest
cells; a cell shallower than that level is its own group there, so the levels nest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from geoguesser.config import GridSettings
from geoguesser.errors import UserError
from geoguesser.geo.cell_frame import cell_frame, clip_to, projected, reading_order
from geoguesser.geo.grid import candidate_squares


@dataclass(frozen=True)
class _Box:
    bounds: tuple[float, float, float, float]
    path: tuple[int, ...]  # node ids from the root down to this box


def _cut(lo: float, hi: float, values: np.ndarray, median: bool, smallest: float) -> float:
    """Where to cut [lo, hi): the middle, or the values' median kept `smallest` from each end.

    The median is taken halfway between the two middle values, so that no location lies on
    the cut (a point on a cell's edge could count for one cell and be labelled the other).
    """
    if not median or len(values) < 2:
        return (lo + hi) / 2
    middle = np.partition(values, [len(values) // 2 - 1, len(values) // 2])
    cut = (middle[len(values) // 2 - 1] + middle[len(values) // 2]) / 2
    return float(np.clip(cut, lo + smallest, hi - smallest))


def _split(box: _Box, x, y, settings: dict, next_id: list[int]) -> list[_Box]:
    """The leaves under `box`, given the training locations inside it."""
    x0, y0, x1, y1 = box.bounds
    smallest = settings["min_cell_km"] * 1000.0
    crowded = len(x) > settings["max_train"]
    if not crowded or min(x1 - x0, y1 - y0) < 2 * smallest:
        return [box]
    median = settings["split_at"] == "median"
    xm, ym = _cut(x0, x1, x, median, smallest), _cut(y0, y1, y, median, smallest)
    leaves = []
    for bx0, bx1 in ((x0, xm), (xm, x1)):
        for by0, by1 in ((ym, y1), (y0, ym)):  # north first, as cells are read
            inside = (x >= bx0) & (x < bx1) & (y >= by0) & (y < by1)
            child = _Box((bx0, by0, bx1, by1), (*box.path, next_id[0]))
            next_id[0] += 1
            leaves += _split(child, x[inside], y[inside], settings, next_id)
    return leaves


def _levels(leaves: list[_Box]) -> list[np.ndarray]:
    """Each leaf's ancestor id at each coarser level, finest first (see the module docstring)."""
    depth = max(len(leaf.path) for leaf in leaves) - 1
    return [
        np.array([leaf.path[min(len(leaf.path) - 1, depth - k)] for leaf in leaves])
        for k in range(1, depth + 1)
    ]


def quadtree_cells(border, train_x, train_y, grid: GridSettings, crs: str):
    """The quadtree's cells cut to the border, as the cells table (cell_frame)."""
    settings = grid.kind_settings()
    border_xy = projected(border, crs)
    roots, _, _ = candidate_squares(border_xy, grid.cell_km, None, crs)
    roots = roots[shapely.intersects(border_xy, roots)]
    next_id = [len(roots)]
    leaves = []
    for index, root in enumerate(roots):
        x0, y0, x1, y1 = shapely.bounds(root)
        inside = (train_x >= x0) & (train_x < x1) & (train_y >= y0) & (train_y < y1)
        box = _Box((x0, y0, x1, y1), (index,))
        leaves += _split(box, train_x[inside], train_y[inside], settings, next_id)
    boxes = shapely.box(*np.array([leaf.bounds for leaf in leaves]).T)
    land, keep = clip_to(boxes, border_xy)
    if len(land) == 0:
        raise UserError("the grid does not touch the border: check the border file and the CRS")
    groups = [level[keep] for level in _levels(leaves)]
    centre = shapely.centroid(boxes[keep])
    order = reading_order(shapely.get_x(centre), shapely.get_y(centre))
    side_km = np.sqrt(shapely.area(boxes[keep]))[order] / 1000.0
    minus = np.full(len(land), -1, dtype=np.int64)
    return cell_frame(
        land[order],
        train_x,
        train_y,
        crs,
        grid.min_train,
        {"row": minus, "col": minus, "side_km": side_km},
        {"cell_km": grid.cell_km, "cell_deg": None},
        [group[order] for group in groups],
    )
