"""Great-circle error metrics: what the competition and GeoGuessr players count, computed once.

`GeoErrors` is a torchmetrics `Metric`, so validation, test (on any device, synced across
processes) and step 05 (from predictions.csv) all summarize errors with the same code, and
metrics.json, the training summary and TensorBoard's test/* scalars agree.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from geoguesser.geo.coords import (
    DEFAULT_CRS,
    haversine_km,
    haversine_km_torch,
    to_latlon,
    to_projected,
)

THRESHOLDS_KM = (1, 5, 25, 50, 100)


class GeoErrors(Metric):
    """How many locations, mean and median km, share within 1, 5, 25, 50 and 100 km, GeoScore.

    `update(pred, target)` takes (N, 2) latitude/longitude in degrees (tensors or arrays);
    the great-circle errors are kept (a median needs them all), computed in float64 where
    the device has it. `compute()` returns a dict keyed as the run's files and logs name them.
    Under DDP the errors of every process are gathered (`cat`; shards of different lengths
    are fine), so `n` counts each location of the split once when the shards are disjoint.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, diagonal_km: float, **kwargs):
        super().__init__(**kwargs)
        self.diagonal_km = float(diagonal_km)
        self.add_state("errors", default=[], dist_reduce_fx="cat")

    def update(self, pred, target) -> None:
        dtype = torch.float32 if self.device.type == "mps" else torch.float64  # MPS has no f64
        pred, target = (torch.as_tensor(t).to(self.device, dtype) for t in (pred, target))
        self.errors.append(haversine_km_torch(target[:, 0], target[:, 1], pred[:, 0], pred[:, 1]))

    def compute(self) -> dict[str, torch.Tensor]:
        # A list of batches here, or one tensor once synced across processes.
        errors = (
            dim_zero_cat(self.errors) if len(self.errors) else torch.zeros(0, device=self.device)
        )
        median = errors.quantile(0.5) if errors.numel() else errors.mean()  # nan when empty
        n = torch.tensor(float(errors.numel()), device=self.device)
        result = {"n": n, "mean_km": errors.mean(), "median_km": median}
        result.update({f"acc_{t}km": (errors <= t).float().mean() for t in THRESHOLDS_KM})
        result["geoscore"] = (5000 * torch.exp(-10 * errors / self.diagonal_km)).mean()
        return result


def summarize(pred, target, diagonal_km: float) -> dict[str, float]:
    """GeoErrors of one set of predictions as plain floats, plus their number `n`."""
    metric = GeoErrors(diagonal_km)
    metric.update(pred, target)
    result = {key: float(value) for key, value in metric.compute().items()}
    result["n"] = len(pred)
    return result


def mean_location(lat, lon, crs: str = DEFAULT_CRS) -> tuple[float, float]:
    """The mean of locations taken in the projected plane (the 'predict the mean' baseline)."""
    x, y = to_projected(lat, lon, crs)
    mean_lat, mean_lon = to_latlon(np.mean(x), np.mean(y), crs)
    return float(mean_lat), float(mean_lon)


def baseline_errors(train_lat, train_lon, lat, lon, crs: str = DEFAULT_CRS) -> np.ndarray:
    """Errors of always answering the training mean location."""
    mean_lat, mean_lon = mean_location(train_lat, train_lon, crs)
    return haversine_km(mean_lat, mean_lon, lat, lon)


def region_accuracy(regions, true_lat, true_lon, pred_lat, pred_lon, crs: str = DEFAULT_CRS):
    """Share of locations whose prediction lies in the truth's region (NaN with none).

    `regions` as regions.load_regions gives them (e.g. Croatia's counties); a point outside
    every region counts for the nearest one, the truth and the prediction alike.
    """
    from geoguesser.geo.regions import region_of

    if len(np.atleast_1d(true_lat)) == 0:
        return float("nan")
    truth = region_of(regions, true_lat, true_lon, crs)
    guess = region_of(regions, pred_lat, pred_lon, crs)
    return float(np.mean(truth == guess))
