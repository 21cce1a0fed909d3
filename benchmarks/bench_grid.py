"""Grid benchmark: a 5 km grid over Croatia and 100,000 locations assigned to their cells.

Prints the time to build the grid, the time to assign the locations with the spatial index
(`assign_cells`), and the same assignment done the naive way (a Python loop over cells, each
testing every point), with the speed-up ratio. Then, with `--kinds`, each grid kind
(square, quadtree, voronoi, regions) built from growing numbers of training locations
(`--sizes`), with the same two assignments of those locations and their ratio.
Usage: python benchmarks/bench_grid.py [--kinds]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import shapely

from geoguesser.config import GridSettings
from geoguesser.data.landscape import Landscape
from geoguesser.geo.borders import load_border, load_coast
from geoguesser.geo.coords import to_projected
from geoguesser.geo.grid import assign_cells, build_cells, kept_cells, make_cells

KIND_SETTINGS = {
    "square": dict(kind="square", cell_km=25),
    "quadtree": dict(kind="quadtree", cell_km=100, max_train=100),
    "voronoi": dict(kind="voronoi", cells=100),
    "regions": dict(kind="regions", max_train=200),
}


def naive_assign(cells, lat, lon) -> np.ndarray:
    """The obvious way: test every point against each cell in turn, then nearest for the rest."""
    classes = kept_cells(cells)
    polygons = classes.geometry.to_crs(cells.attrs["crs"]).to_numpy()
    x, y = to_projected(lat, lon, cells.attrs["crs"])
    labels = np.full(len(x), -1)
    for label, polygon in zip(classes.label, polygons, strict=True):
        hit = (labels < 0) & shapely.contains_xy(polygon, x, y)
        labels[hit] = label
    for i in np.flatnonzero(labels < 0):
        point = shapely.Point(x[i], y[i])
        labels[i] = classes.label.iloc[
            int(np.argmin([polygon.distance(point) for polygon in polygons]))
        ]
    return labels


def timed(function, *args):
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def kinds(border, sizes: list[int]) -> None:
    """Each kind's build time at growing training sizes, and its assignment against naive."""
    warm_lat, warm_lon = Landscape(border, load_coast()).sample(200, np.random.default_rng(0))
    for settings in KIND_SETTINGS.values():  # imports (scikit-learn) and caches out of the timing
        build_cells(border, warm_lat, warm_lon, GridSettings(**settings), "EPSG:3766")
    print("kind      train  classes  build s  assign s  naive s  ratio")
    for size in sizes:
        lat, lon = Landscape(border, load_coast()).sample(size, np.random.default_rng(size))
        for name, settings in KIND_SETTINGS.items():
            grid = GridSettings(**settings)
            cells, build = timed(build_cells, border, lat, lon, grid, "EPSG:3766")
            _, fast = timed(assign_cells, cells, lat, lon)
            _, slow = timed(naive_assign, cells, lat, lon)
            n, ratio = len(kept_cells(cells)), slow / fast
            print(f"{name:9} {size:6} {n:8} {build:8.2f} {fast:9.3f} {slow:8.2f} {ratio:5.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=100_000)
    parser.add_argument("--cell-km", type=float, default=5.0)
    parser.add_argument("--kinds", action="store_true", help="every grid kind at growing sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    args = parser.parse_args()

    border = load_border()
    if args.kinds:
        kinds(border, args.sizes)
        return
    lat, lon = Landscape(border, load_coast()).sample(args.locations, np.random.default_rng(0))
    train = np.random.default_rng(1).random(args.locations) < 0.8

    start = time.perf_counter()
    cells = make_cells(border, lat[train], lon[train], cell_km=args.cell_km)
    build = time.perf_counter() - start
    start = time.perf_counter()
    labels = assign_cells(cells, lat, lon)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    naive = naive_assign(cells, lat, lon)
    slow = time.perf_counter() - start
    # Points on a shared cell edge may go either way; everything else must agree.
    agree = float((labels == naive).mean())

    n_classes = len(kept_cells(cells))
    print(f"grid: {args.cell_km:g} km cells, {len(cells)} candidates, {n_classes} classes")
    print(f"build grid (with {train.sum()} training locations): {build:.2f} s")
    print(f"assign {args.locations} locations, spatial index: {fast:.2f} s")
    print(f"assign {args.locations} locations, naive per-cell loop: {slow:.2f} s")
    print(f"speed-up: {slow / fast:.1f}x (labels agree on {agree:.4%})")


if __name__ == "__main__":
    main()
