"""How sure a classifier is: its expected error in km, and its likeliest cells.

Both come from the predicted distribution alone, so they are known at prediction time,
without the truth (predict's `--with-confidence`, the server's answers, the report's
calibration).
"""

from __future__ import annotations

import numpy as np

from geoguesser.geo.coords import haversine_km


def expected_error_km(
    probs: np.ndarray, lat: np.ndarray, lon: np.ndarray, centroids_latlon: np.ndarray
) -> np.ndarray:
    """(B,) the model's own expected error: sum_k p_k * distance(guess, centroid_k), in km.

    If the true location were drawn from the predicted distribution (each cell standing for
    its centroid), this is the mean great-circle distance the guess would be off by. It uses
    nothing but the probabilities, so it is known at prediction time, without the truth.
    `centroids_latlon` is (K, 2), or (B, K, 2) when each location has its own points (the
    contrastive head's top gallery points).
    """
    probs = np.asarray(probs, dtype=np.float64)
    points = centroids_latlon if centroids_latlon.ndim == 3 else centroids_latlon[None]
    distance = haversine_km(
        np.asarray(lat)[:, None], np.asarray(lon)[:, None], points[..., 0], points[..., 1]
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
