"""What the network is asked to output, and how an output becomes a location.

Classification predicts a distribution over grid cells; it is decoded either as the
probability-weighted mean of the cells' centroids (in the projected plane, where averaging
is meaningful) or as the most likely cell's centroid. Haversine label smoothing (as in
PIGEON) replaces the one-hot target with exp(-(d_i - d_min) / tau), normalized, where d_i
is the great-circle distance from the true location to cell i's centroid: a near miss
then costs less than a far one. Regression predicts the min-max normalized projected x/y.
"""

from __future__ import annotations

import torch

from .geo import haversine_km_torch


def haversine_soft_targets(
    true_lat: torch.Tensor,
    true_lon: torch.Tensor,
    centroid_lat: torch.Tensor,
    centroid_lon: torch.Tensor,
    tau_km: float,
) -> torch.Tensor:
    """(B, K) target distributions; the nearest centroid gets the largest share."""
    distance = haversine_km_torch(
        true_lat[:, None], true_lon[:, None], centroid_lat[None], centroid_lon[None]
    )
    weight = torch.exp(-(distance - distance.min(dim=1, keepdim=True).values) / tau_km)
    return weight / weight.sum(dim=1, keepdim=True)


def decode_classes(
    probs: torch.Tensor, centroid_xy: torch.Tensor, how: str = "mean"
) -> torch.Tensor:
    """(B, 2) projected coordinates from (B, K) class probabilities and (K, 2) centroids."""
    if how == "mean":
        return probs.to(centroid_xy.dtype) @ centroid_xy
    if how == "argmax":
        return centroid_xy[probs.argmax(dim=1)]
    raise ValueError(f"unknown decoding {how!r}")
