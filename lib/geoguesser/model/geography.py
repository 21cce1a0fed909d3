"""What a checkpoint knows of the map: cells and centroids, scaler, CRS, border, diagonal, levels.

A `Geography` holds the classes' cells with their three kinds of centroid, the coordinate
scaler, the projected CRS, the border and its bounding-box diagonal (the GeoScore's scale),
and the cells' coarser levels that `train.hierarchy` trains on (geo.hierarchy).
It serializes to plain lists and numbers, so that it travels inside a checkpoint loaded with
`weights_only=True` and a checkpoint alone turns photographs into coordinates (decoding.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import shapely
import torch
from shapely.geometry.base import BaseGeometry

from geoguesser.config import CENTROID_KINDS
from geoguesser.geo.borders import bbox_diagonal_km
from geoguesser.geo.cell_frame import parent_columns
from geoguesser.geo.coords import MinMaxScaler
from geoguesser.geo.grid import kept_cells
from geoguesser.geo.hierarchy import levels as cell_levels
from geoguesser.model.decoding import GeographyDecoding

CELL_COLUMNS = ["label", "row", "col", "n_train"] + [
    f"{kind}_{axis}" for kind in CENTROID_KINDS for axis in ("lat", "lon", "x", "y")
]


@dataclass(frozen=True)
class Geography(GeographyDecoding):
    """Cells (one per class, in label order), scaler, CRS, border and diagonal of a run.

    Its outputs-to-coordinates methods (`decode` and the ones it uses) are
    decoding.GeographyDecoding's.
    """

    cells: dict[str, list]
    scaler: MinMaxScaler
    border: BaseGeometry | None
    diagonal_km: float
    grid: dict
    # train.hierarchy's coarser levels (geo.hierarchy): per level, each class's group id.
    # Checkpoints written before them have none.
    levels: list[list[int]] = field(default_factory=list)

    @classmethod
    def of(cls, cells, scaler: MinMaxScaler, border: BaseGeometry | None = None) -> Geography:
        """From step 02's cells (GeoDataFrame), step 03's scaler and the country border."""
        classes = kept_cells(cells)
        extent = border if border is not None else shapely.box(*classes.total_bounds)
        columns = CELL_COLUMNS + parent_columns(classes.columns)
        return cls(
            cells={column: classes[column].tolist() for column in columns},
            scaler=scaler,
            border=border,
            diagonal_km=bbox_diagonal_km(extent),
            grid=_grid_facts(cells.attrs, classes),
            levels=[level.tolist() for level in cell_levels(cells)],
        )

    # --- serialization --------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain lists and numbers (the border as WKT): what a checkpoint stores."""
        wkt = shapely.to_wkt(self.border, rounding_precision=6) if self.border else None
        return {
            "crs": self.crs,
            "scaler": self.scaler.to_dict(),
            "grid": self.grid,
            "cells": self.cells,
            "border_wkt": wkt,
            "diagonal_km": self.diagonal_km,
            "levels": self.levels,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Geography:
        wkt = data.get("border_wkt")
        return cls(
            cells=data["cells"],
            scaler=MinMaxScaler.from_dict(data["scaler"]),
            border=shapely.from_wkt(wkt) if wkt else None,
            diagonal_km=float(data["diagonal_km"]),
            grid=data.get("grid", {}),
            levels=data.get("levels", []),
        )

    # --- facts ----------------------------------------------------------------------------

    @property
    def crs(self) -> str:
        return self.scaler.crs

    @property
    def n_classes(self) -> int:
        return len(self.cells["label"])

    @property
    def cell_side_m(self) -> float:
        """A cell's side in projected metres: the hybrid's unit of offset.

        Cells other than squares (grid kinds quadtree, voronoi, regions) differ in size; their
        side is the square root of the median class's area (`side_km`, from Geography.of).
        """
        if self.grid.get("side_km"):
            return float(self.grid["side_km"]) * 1000.0
        if self.grid.get("cell_deg"):
            return float(self.grid["cell_deg"]) * 111_320.0  # a degree of latitude
        return float(self.grid.get("cell_km") or 50.0) * 1000.0

    def centroids(self, kind: str, plane: str = "xy") -> torch.Tensor:
        """(K, 2) float64 centroids of one kind: projected metres ("xy") or degrees ("latlon")."""
        axes = ("x", "y") if plane == "xy" else ("lat", "lon")
        return self._centroids[(kind, axes)]

    @cached_property
    def level_groups(self) -> list[torch.Tensor]:
        """The coarser levels as int64 tensors (K,), on the CPU: hierarchy_loss's input."""
        return [torch.tensor(level, dtype=torch.int64) for level in self.levels]

    @cached_property
    def _centroids(self) -> dict:
        return {
            (kind, axes): torch.tensor(
                np.column_stack([self.cells[f"{kind}_{axis}"] for axis in axes]),
                dtype=torch.float64,
            )
            for kind in CENTROID_KINDS
            for axes in (("x", "y"), ("lat", "lon"))
        }


def _grid_facts(attrs: dict, classes) -> dict:
    """The cells file's settings (kind and its keys) for the checkpoint; squares as before."""
    grid = {k: attrs.get(k) for k in ("cell_km", "cell_deg", "min_train")}
    if attrs.get("kind", "square") != "square":
        grid.update({k: v for k, v in attrs.items() if k != "crs"})
        grid["side_km"] = float(np.sqrt(np.median(classes.area_km2)))
    return grid
