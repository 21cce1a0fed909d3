"""Distance metrics of a set of predictions: what the competition and GeoGuessr players count."""

from __future__ import annotations

import numpy as np

from .geo import DEFAULT_CRS, haversine_km, to_latlon, to_projected

THRESHOLDS_KM = (1, 5, 25, 50, 100)


def geoscore(errors_km, diagonal_km: float) -> float:
    """Mean GeoGuessr-style score, 5000 * exp(-10 d / D), with D the country's bbox diagonal."""
    errors_km = np.asarray(errors_km, dtype=float)
    return (
        float(np.mean(5000 * np.exp(-10 * errors_km / diagonal_km)))
        if errors_km.size
        else float("nan")
    )


def summarize(errors_km, diagonal_km: float) -> dict[str, float]:
    """n, mean and median km, share within each threshold, and the geoscore."""
    errors_km = np.asarray(errors_km, dtype=float)
    if errors_km.size == 0:
        return {"n": 0}
    summary = {
        "n": int(errors_km.size),
        "mean_km": float(errors_km.mean()),
        "median_km": float(np.median(errors_km)),
    }
    summary.update({f"acc_{t}km": float((errors_km <= t).mean()) for t in THRESHOLDS_KM})
    summary["geoscore"] = geoscore(errors_km, diagonal_km)
    return summary


def mean_location(lat, lon, crs: str = DEFAULT_CRS) -> tuple[float, float]:
    """The mean of locations taken in the projected plane (the 'predict the mean' baseline)."""
    x, y = to_projected(lat, lon, crs)
    mean_lat, mean_lon = to_latlon(np.mean(x), np.mean(y), crs)
    return float(mean_lat), float(mean_lon)


def baseline_errors(train_lat, train_lon, lat, lon, crs: str = DEFAULT_CRS) -> np.ndarray:
    """Errors of always answering the training mean location."""
    mean_lat, mean_lon = mean_location(train_lat, train_lon, crs)
    return haversine_km(mean_lat, mean_lon, lat, lon)
