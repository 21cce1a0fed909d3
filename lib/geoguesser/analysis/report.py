"""Numbers about a finished run: metrics against baselines, and decodings side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd

from geoguesser.config import CENTROID_KINDS, DECODINGS
from geoguesser.geo.coords import haversine_km
from geoguesser.geo.metrics import baseline_errors, region_accuracy, summarize
from geoguesser.geo.regions import load_regions

METRIC_KEYS = ("n", "mean_km", "median_km", "acc_1km", "acc_25km", "acc_100km", "geoscore")


def run_metrics(
    predictions: pd.DataFrame, table: pd.DataFrame, cells, diagonal_km: float, crs: str
) -> dict:
    """Per split (val, test): the model's metrics and two baselines, as metrics.json holds them.

    Baselines: always answering the training mean location, and always answering the
    weighted centroid of the cell with most training locations. With cells of grid kind
    regions, `region_accuracy`: the share placed in the truth's region (of the regions file,
    before small ones were merged), beside the km thresholds.
    """
    train = table[table.split == "train"]
    regions = None
    if cells.attrs.get("kind") == "regions":
        regions = load_regions(cells.attrs["regions"], cells.attrs.get("region_parent"))
    top_cell = cells[cells.label >= 0].sort_values("n_train", ascending=False).iloc[0]
    result = {}
    for split, group in predictions.groupby("split"):
        summary = summarize(
            group[["pred_lat", "pred_lon"]].to_numpy(),
            group[["true_lat", "true_lon"]].to_numpy(),
            diagonal_km,
        )
        metrics = {key: summary[key] for key in METRIC_KEYS}
        metrics["acc_5km"], metrics["acc_50km"] = summary["acc_5km"], summary["acc_50km"]
        if regions is not None:
            metrics["region_accuracy"] = region_accuracy(
                regions, group.true_lat, group.true_lon, group.pred_lat, group.pred_lon, crs
            )
        mean_errors = baseline_errors(
            train.latitude, train.longitude, group.true_lat, group.true_lon, crs
        )
        metrics["baseline_mean_km"] = float(mean_errors.mean())
        cell_errors = haversine_km(
            top_cell.weighted_lat, top_cell.weighted_lon, group.true_lat, group.true_lon
        )
        metrics["baseline_top_cell_km"] = float(cell_errors.mean())
        metrics |= calibration(group)
        result[str(split)] = metrics
    return result


def calibration(predictions: pd.DataFrame) -> dict:
    """How well `expected_error_km` foretells `error_km`; nothing for a regression.

    `expected_mean_km` beside `mean_km` says whether the model is over-confident on average;
    `calibration_spearman`, the rank correlation of expected and actual errors, whether it
    knows which of its guesses are the bad ones (1: perfectly, 0: not at all).
    """
    if "expected_error_km" not in predictions:
        return {}
    known = predictions[["expected_error_km", "error_km"]].dropna()
    if len(known) < 2:
        return {}
    ranks = known.rank()
    rho = float(ranks.expected_error_km.corr(ranks.error_km))  # NaN when either is constant
    return {
        "expected_mean_km": float(known.expected_error_km.mean()),
        "calibration_spearman": None if np.isnan(rho) else rho,
    }


def decoding_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Mean and median km per split for every (centroid kind, decoding) of a classifier."""
    rows = []
    for kind in CENTROID_KINDS:
        for how in DECODINGS:
            lat, lon = f"pred_{kind}_{how}_lat", f"pred_{kind}_{how}_lon"
            if lat not in predictions:
                continue
            errors = haversine_km(
                predictions.true_lat, predictions.true_lon, predictions[lat], predictions[lon]
            )
            for split, values in pd.Series(errors).groupby(predictions.split.to_numpy()):
                rows.append(
                    {
                        "split": split,
                        "centroids": kind,
                        "decoding": how,
                        "mean_km": values.mean(),
                        "median_km": np.median(values),
                    }
                )
    return pd.DataFrame(rows)
