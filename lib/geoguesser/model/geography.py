"""What a checkpoint knows of the map, and the one place network outputs become coordinates.

A `Geography` holds the classes' cells with their three kinds of centroid, the coordinate
scaler, the projected CRS, the border and its bounding-box diagonal (the GeoScore's scale).
It serializes to plain lists and numbers, so that it travels inside a checkpoint loaded with
`weights_only=True` and a checkpoint alone turns photographs into coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
import torch
from shapely.geometry.base import BaseGeometry

from geoguesser.config import CENTROID_KINDS, DECODINGS, TOP_CELLS
from geoguesser.geo.borders import bbox_diagonal_km, snap_inside
from geoguesser.geo.coords import MinMaxScaler, haversine_km, to_latlon
from geoguesser.geo.grid import kept_cells
from geoguesser.model.objectives import decode_classes, split_hybrid

CELL_COLUMNS = ["label", "row", "col", "n_train"] + [
    f"{kind}_{axis}" for kind in CENTROID_KINDS for axis in ("lat", "lon", "x", "y")
]


def expected_error_km(
    probs: np.ndarray, lat: np.ndarray, lon: np.ndarray, centroids_latlon: np.ndarray
) -> np.ndarray:
    """(B,) the model's own expected error: sum_k p_k * distance(guess, centroid_k), in km.

    If the true location were drawn from the predicted distribution (each cell standing for
    its centroid), this is the mean great-circle distance the guess would be off by. It uses
    nothing but the probabilities, so it is known at prediction time, without the truth.
    """
    probs = np.asarray(probs, dtype=np.float64)
    distance = haversine_km(
        np.asarray(lat)[:, None],
        np.asarray(lon)[:, None],
        centroids_latlon[None, :, 0],
        centroids_latlon[None, :, 1],
    )
    return (probs * distance).sum(axis=1)


def top_cells(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, k) labels and probabilities of the k likeliest cells, likeliest first.

    k larger than the number of cells is cut to it.
    """
    probs = np.asarray(probs)
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(probs, top, axis=1)


def confidence_columns(
    probs: np.ndarray, lat: np.ndarray, lon: np.ndarray, centroids_latlon: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """`expected_error_km` and `top1_label`, `top1_prob`, ... `top<k>_prob` of a distribution."""
    columns = {"expected_error_km": expected_error_km(probs, lat, lon, centroids_latlon)}
    labels, chances = top_cells(probs, k)
    for i in range(labels.shape[1]):
        columns[f"top{i + 1}_label"], columns[f"top{i + 1}_prob"] = labels[:, i], chances[:, i]
    return columns


@dataclass(frozen=True)
class Geography:
    """Cells (one per class, in label order), scaler, CRS, border and diagonal of a run."""

    cells: dict[str, list]
    scaler: MinMaxScaler
    border: BaseGeometry | None
    diagonal_km: float
    grid: dict

    @classmethod
    def of(cls, cells, scaler: MinMaxScaler, border: BaseGeometry | None = None) -> Geography:
        """From step 02's cells (GeoDataFrame), step 03's scaler and the country border."""
        classes = kept_cells(cells)
        extent = border if border is not None else shapely.box(*classes.total_bounds)
        return cls(
            cells={column: classes[column].tolist() for column in CELL_COLUMNS},
            scaler=scaler,
            border=border,
            diagonal_km=bbox_diagonal_km(extent),
            grid={k: cells.attrs.get(k) for k in ("cell_km", "cell_deg", "min_train")},
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
        """A cell's side in projected metres: the hybrid's unit of offset."""
        if self.grid.get("cell_deg"):
            return float(self.grid["cell_deg"]) * 111_320.0  # a degree of latitude
        return float(self.grid.get("cell_km") or 50.0) * 1000.0

    def centroids(self, kind: str, plane: str = "xy") -> torch.Tensor:
        """(K, 2) float64 centroids of one kind: projected metres ("xy") or degrees ("latlon")."""
        axes = ("x", "y") if plane == "xy" else ("lat", "lon")
        return self._centroids[(kind, axes)]

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

    # --- decoding -------------------------------------------------------------------------

    def from_normalized(self, xy: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 2) min-max normalized x/y (a regression's output) -> latitude, longitude."""
        xy = xy.detach().double().cpu()
        x, y = self.scaler.inverse(xy[:, 0], xy[:, 1])
        return to_latlon(x.numpy(), y.numpy(), self.crs)

    def from_probabilities(
        self,
        probs: torch.Tensor,
        kind: str = "weighted",
        how: str = "mean",
        offsets: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, K) class probabilities -> latitude, longitude of the decoded centroid.

        `how`: the probability-weighted mean of the centroids (taken in the projected plane,
        where averaging is meaningful) or the most likely cell's centroid. A hybrid's
        `offsets` (B, K, 2), in cell sides, move each centroid first.
        """
        points = self.cell_points(kind, offsets)
        xy = decode_classes(probs.detach().cpu(), points, how).numpy()
        return to_latlon(xy[:, 0], xy[:, 1], self.crs)

    def cell_points(self, kind: str, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Each cell's point in projected metres: (K, 2) centroids, or (B, K, 2) centroids +
        a hybrid's offsets (in cell sides)."""
        centroids = self.centroids(kind)
        if offsets is None:
            return centroids
        return centroids[None] + offsets.detach().double().cpu() * self.cell_side_m

    def decode(
        self,
        outputs: torch.Tensor,
        objective: str,
        kind: str = "weighted",
        how: str = "mean",
        snap: bool = False,
        every: bool = False,
        top_k: int = TOP_CELLS,
    ) -> dict[str, np.ndarray]:
        """Network outputs -> {"lat", "lon"} with the chosen decoding, optionally snapped to land.

        A hybrid's outputs (K logits, then K offsets) decode as a classifier's whose centroids
        are moved by their offsets. With `every`, a classifier also reports each
        (centroid kind, mean/argmax) pair as
        `<kind>_<how>_lat/lon`, the most likely label and its probability, for comparing
        decodings after training, and its confidence (see `confidence_columns`: the expected
        error from the final guess to the `kind` centroids, and the `top_k` likeliest cells);
        validation needs only the chosen one. A regression has no distribution, so its
        `expected_error_km` is NaN and it has no top cells.
        """
        result: dict[str, np.ndarray] = {}
        if objective == "regression":
            lat, lon = self.from_normalized(outputs)
        else:
            logits, offsets = outputs, None
            if objective == "hybrid":
                logits, offsets = split_hybrid(outputs, self.n_classes)
            probs = torch.softmax(logits.detach().float(), dim=1).cpu()
            pairs = [(kind, how)]
            if every:
                top = probs.max(dim=1)
                result["label"], result["prob"] = top.indices.numpy(), top.values.numpy()
                # A hybrid's offsets are relative to its own kind of centroid only.
                kinds = CENTROID_KINDS if offsets is None else (kind,)
                pairs = [(k, h) for k in kinds for h in DECODINGS]
            for k, h in pairs:
                result[f"{k}_{h}_lat"], result[f"{k}_{h}_lon"] = self.from_probabilities(
                    probs, k, h, offsets
                )
            lat, lon = result[f"{kind}_{how}_lat"], result[f"{kind}_{how}_lon"]
        if snap and self.border is not None:
            lat, lon = snap_inside(self.border, lat, lon)
        result["lat"], result["lon"] = np.asarray(lat), np.asarray(lon)
        if every and objective == "regression":
            result["expected_error_km"] = np.full(len(result["lat"]), np.nan)
        elif every:
            centroids = self.centroids(kind, "latlon").numpy()
            result |= confidence_columns(
                probs.numpy(), result["lat"], result["lon"], centroids, top_k
            )
        return result
