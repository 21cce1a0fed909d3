"""What POST /predict answers: the guess, its expected error and the likeliest cells' outlines."""

from __future__ import annotations

import numpy as np
import shapely


def cell_outline(geography, label: int) -> list[list[float]] | None:
    """The square of class `label` as [lat, lon] corners, rebuilt from its row and column."""
    grid = geography.grid or {}
    row, col = geography.cells["row"][label], geography.cells["col"][label]
    if grid.get("cell_km"):
        from geoguesser.geo.coords import to_latlon

        size = grid["cell_km"] * 1000.0
        square = shapely.segmentize(
            shapely.box(col * size, row * size, (col + 1) * size, (row + 1) * size), size / 8
        )
        x, y = np.asarray(square.exterior.coords).T
        lat, lon = to_latlon(x, y, geography.crs)
    elif grid.get("cell_deg"):
        size = grid["cell_deg"]
        lon, lat = np.asarray(
            shapely.box(col * size, row * size, (col + 1) * size, (row + 1) * size).exterior.coords
        ).T
    else:
        return None
    return [[round(float(a), 5), round(float(b), 5)] for a, b in zip(lat, lon, strict=True)]


def answer(model, decoded: dict, i: int, name: str, n_views: int) -> dict:
    """Row `i` of `model.locate`'s output as the JSON POST /predict returns."""
    geography = model.geography
    centroids = geography.centroids(model.settings.centroid_kind, "latlon").numpy()
    expected = float(decoded["expected_error_km"][i])
    cells = []
    k = 1
    while f"top{k}_label" in decoded:
        label = int(decoded[f"top{k}_label"][i])
        cells.append(
            {
                "label": label,
                "probability": float(decoded[f"top{k}_prob"][i]),
                "latitude": float(centroids[label, 0]),
                "longitude": float(centroids[label, 1]),
                "outline": cell_outline(geography, label),
            }
        )
        k += 1
    return {
        "model": name,
        "views": n_views,
        "latitude": float(decoded["lat"][i]),
        "longitude": float(decoded["lon"][i]),
        "expected_error_km": None if np.isnan(expected) else expected,
        "top_cells": cells,
    }
