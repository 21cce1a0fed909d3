"""Voronoi cells: k-means of the training locations, each centre's Voronoi cell cut to the border.

About `grid.cells` classes that follow where the data is: k-means (scikit-learn, seeded) of
the projected training locations places centres where locations crowd, and the Voronoi cell
of a centre (shapely) is the land nearer to it than to any other. The same two steps shape
the split regions of regions.py (`voronoi_parts`).

Parents: a coarser k-means of the centres themselves (weighted by their locations) into an
eighth as many groups, then an eighth of that, while two groups or more remain. It needs no
map of administrative units, so it works for any border, and the groups are compact sets of
neighbouring cells, which is what a coarser class should be.
"""

from __future__ import annotations

import numpy as np
import shapely

from geoguesser.config import GridSettings
from geoguesser.errors import UserError
from geoguesser.geo.cell_frame import cell_frame, clip_to, projected, reading_order

COARSER = 8  # each parent level has about this many times fewer groups


def kmeans_centres(x: np.ndarray, y: np.ndarray, k: int, seed: int, weight=None) -> np.ndarray:
    """(k', 2) k-means centres of the points, k' = k or the number of distinct points if fewer."""
    from sklearn.cluster import KMeans

    points = np.column_stack([x, y])
    k = min(k, len(np.unique(points, axis=0)))
    model = KMeans(n_clusters=k, random_state=seed, n_init="auto").fit(points, sample_weight=weight)
    return model.cluster_centers_


def voronoi_parts(centres: np.ndarray, area_xy) -> tuple[np.ndarray, np.ndarray]:
    """The Voronoi cell of each centre cut to `area_xy`, and which centres kept a part."""
    if len(centres) == 1:
        shapes = np.array([shapely.box(*area_xy.bounds).buffer(1.0)])
    else:
        diagram = shapely.voronoi_polygons(
            shapely.multipoints(centres), extend_to=shapely.box(*area_xy.bounds).buffer(1e3)
        )
        polygons = np.asarray(shapely.get_parts(diagram))
        # The diagram's order is not the points' order: each cell holds exactly one centre.
        cell_idx, centre_idx = shapely.STRtree(shapely.points(centres)).query(
            polygons, predicate="contains"
        )
        shapes = np.empty(len(centres), dtype=object)
        shapes[centre_idx] = polygons[cell_idx]
    return clip_to(shapes, area_xy)


def _nearest(centres: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the centre nearest each point."""
    tree = shapely.STRtree(shapely.points(centres))
    point_idx, centre_idx = tree.query_nearest(shapely.points(points), all_matches=False)
    nearest = np.empty(len(points), dtype=np.int64)
    nearest[point_idx] = centre_idx
    return nearest


def _parent_groups(centres: np.ndarray, weight: np.ndarray, seed: int) -> list[np.ndarray]:
    """Group ids of each centre at coarser k-means levels (module docstring), finest first."""
    groups, k = [], len(centres) // COARSER
    while k >= 2:
        coarse = kmeans_centres(centres[:, 0], centres[:, 1], k, seed, weight)
        groups.append(_nearest(coarse, centres))
        k //= COARSER
    return groups


def voronoi_cells(border, train_x, train_y, grid: GridSettings, crs: str):
    """About `grid.cells` Voronoi cells of the training locations, as the cells table."""
    settings = grid.kind_settings()
    border_xy = projected(border, crs)
    centres = kmeans_centres(train_x, train_y, settings["cells"], settings["seed"])
    order = reading_order(centres[:, 0], centres[:, 1])
    centres = centres[order]
    land, keep = voronoi_parts(centres, border_xy)
    if len(land) == 0:
        raise UserError("no Voronoi cell touches the border: check the border file and the CRS")
    nearest = _nearest(centres, np.column_stack([train_x, train_y]))
    weight = np.bincount(nearest, minlength=len(centres)).astype(float)
    groups = [g[keep] for g in _parent_groups(centres, np.maximum(weight, 1e-9), grid.seed)]
    minus = np.full(len(land), -1, dtype=np.int64)
    return cell_frame(
        land, train_x, train_y, crs, grid.min_train, {"row": minus, "col": minus}, {}, groups
    )
