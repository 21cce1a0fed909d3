"""What the network is asked to output, and how an output becomes a location.

Classification predicts a distribution over grid cells; it is decoded either as the
probability-weighted mean of the cells' centroids (in the projected plane, where averaging
is meaningful) or as the most likely cell's centroid. Haversine label smoothing (as in
PIGEON) replaces the one-hot target with exp(-(d_i - d_min) / tau), normalized, where d_i
is the great-circle distance from the true location to cell i's centroid: a near miss
then costs less than a far one. Regression predicts the min-max normalized projected x/y.

The hybrid (OSV-5M's strongest baseline) predicts cells and, for every cell, the offset of
the location from that cell's centroid in the projected plane, in units of the cell's side:
outputs are K logits then K (dx, dy) pairs. Its decoding is the classifier's with each
centroid moved by its offset, so the class probabilities come from the same path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geoguesser.geo.coords import haversine_km_torch


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
    """(B, 2) projected coordinates from (B, K) class probabilities and centroids.

    `centroid_xy` is (K, 2), or (B, K, 2) when every location has its own points per cell
    (the hybrid's centroids moved by their offsets).
    """
    probs = probs.to(centroid_xy.dtype)
    if how == "mean":
        if centroid_xy.ndim == 3:
            return torch.einsum("bk,bkc->bc", probs, centroid_xy)
        return probs @ centroid_xy
    if how == "argmax":
        best = probs.argmax(dim=1)
        if centroid_xy.ndim == 3:
            return centroid_xy[torch.arange(len(best)), best]
        return centroid_xy[best]
    raise ValueError(f"unknown decoding {how!r}")


def hybrid_outputs(n_classes: int) -> int:
    """Outputs of a hybrid head: K logits and K (dx, dy) offsets."""
    return 3 * n_classes


def n_outputs(objective: str, n_classes: int, embedding_dim: int = 0) -> int:
    """How many numbers the head outputs for `objective` over `n_classes` cells (the
    contrastive head: an image embedding of `embedding_dim`)."""
    return {
        "classification": n_classes,
        "hybrid": hybrid_outputs(n_classes),
        "regression": 2,
        "contrastive": embedding_dim,
    }[objective]


def split_hybrid(outputs: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3K) hybrid outputs -> logits (B, K) and offsets (B, K, 2) in cell sides."""
    return outputs[:, :n_classes], outputs[:, n_classes:].reshape(len(outputs), n_classes, 2)


def offset_loss(
    offsets: torch.Tensor,
    labels: torch.Tensor,
    true_xy: torch.Tensor,
    centroid_xy: torch.Tensor,
    side_m: float,
) -> torch.Tensor:
    """Smooth L1 between the true cell's predicted offset and the true offset, in cell sides."""
    target = (true_xy - centroid_xy[labels]) / side_m
    chosen = offsets[torch.arange(len(labels)), labels]
    return F.smooth_l1_loss(chosen.float(), target.float())
