"""The location-contrastive head (`train.objective: contrastive`): its loss and its decoding.

The network's linear head projects the fused image embedding into the location encoder's
space (location_encoder.py). Training is InfoNCE: each image is scored (cosine similarity
times a learned scale, CLIP's temperature, started at 1/0.07) against candidate locations,
the batch's own plus `contrastive_negatives` points drawn from the gallery each step, so
that far places across the whole country are always among them. With `tau_km`, the target
over the candidates is exp(-d / tau_km), normalized, d the great-circle distance from the
true location (objectives.haversine_soft_targets, the classifier's smoothing): a neighbour
is not a full negative. Without it the target is the image's own place.

A guess is the mean, in the projected plane, of the `gallery_top_k` most similar gallery
points, weighted by the softmax of their scaled similarities. Those weights are the head's
"probabilities": the expected error is their weighted distance from the guess to those
points, and the listed cells are the points' nearest cells, their weights summed per cell.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geoguesser.config import TrainSettings
from geoguesser.geo.borders import snap_inside
from geoguesser.geo.coords import haversine_km_torch, to_latlon
from geoguesser.model.confidence import expected_error_km, top_cells
from geoguesser.model.gallery import Gallery
from geoguesser.model.location_encoder import LocationEncoder
from geoguesser.model.objectives import haversine_soft_targets

MAX_SCALE = 100.0  # CLIP's cap on the learned inverse temperature
SAME_PLACE_KM = 0.001  # hard targets: candidates within a metre are the same place


class ContrastiveHead(nn.Module):
    """The location encoder and the learned similarity scale (the state_dict's `contrastive.*`)."""

    def __init__(self, settings: TrainSettings):
        super().__init__()
        s = settings
        self.encoder = LocationEncoder(
            s.location_sigmas_km, s.location_frequencies, s.embedding_dim
        )
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)


def candidates(batch_xy, batch_latlon, gallery: Gallery | None, n: int):
    """Candidate points (B + n, 2) in metres and degrees: the batch's, then n drawn from the
    gallery (the global generator, which training reseeds before every batch)."""
    if gallery is None or n == 0 or len(gallery) == 0:
        return batch_xy, batch_latlon
    drawn = torch.randint(len(gallery), (n,))
    xy = torch.cat([batch_xy, gallery.xy[drawn].to(batch_xy)])
    return xy, torch.cat([batch_latlon, gallery.latlon[drawn].to(batch_latlon)])


def contrastive_loss(
    outputs: torch.Tensor,
    true_xy: torch.Tensor,
    batch: dict,
    head: ContrastiveHead,
    gallery: Gallery | None,
    settings: TrainSettings,
) -> torch.Tensor:
    """InfoNCE of image embeddings `outputs` (B, D) against the candidates' location embeddings.

    `true_xy` (B, 2) are the batch's locations in projected metres, `batch["latlon"]` in degrees.
    """
    s = settings
    latlon = batch["latlon"].double()
    xy, cand_latlon = candidates(true_xy.double(), latlon, gallery, s.contrastive_negatives)
    locations = head.encoder(xy)
    logits = head.scale() * F.normalize(outputs.float(), dim=1) @ locations.T
    return F.cross_entropy(logits, candidate_targets(latlon, cand_latlon, s.tau_km).float())


def candidate_targets(
    latlon: torch.Tensor, candidate_latlon: torch.Tensor, tau_km: float | None
) -> torch.Tensor:
    """(B, C) targets over the candidates, the first B being the batch's own locations.

    exp(-d / tau_km), normalized, with `tau_km`; else shared by the candidates at the
    image's own place (itself, and the gallery's copy of it if one was drawn: the gallery
    holds the training locations, which are never negatives of themselves).
    """
    if tau_km is None:
        distance = haversine_km_torch(
            latlon[:, None, 0], latlon[:, None, 1], candidate_latlon[None, :, 0],
            candidate_latlon[None, :, 1],
        )  # fmt: skip
        same = (distance < SAME_PLACE_KM).to(latlon.dtype)
        return same / same.sum(dim=1, keepdim=True)
    return haversine_soft_targets(
        latlon[:, 0], latlon[:, 1], candidate_latlon[:, 0], candidate_latlon[:, 1], tau_km
    )


@torch.no_grad()
def ranked(outputs: torch.Tensor, gallery: Gallery, scale: float, k: int):
    """The k most similar gallery points of each image: (B, k) indices and softmax weights."""
    query = F.normalize(outputs.detach().float().cpu(), dim=1)
    top = (query @ gallery.embeddings.T).topk(min(k, len(gallery)), dim=1)
    return top.indices, torch.softmax(scale * top.values, dim=1).double()


def decode_gallery(
    outputs: torch.Tensor,
    gallery: Gallery,
    scale: float,
    geography,
    settings: TrainSettings,
    every: bool = False,
    n_cells: int = 3,
) -> dict[str, np.ndarray]:
    """Image embeddings -> {"lat", "lon"}: the weighted mean of the top gallery points.

    With `every`, also the confidence the other heads give: `expected_error_km`, the most
    likely cell (`label`, `prob`) and the `n_cells` likeliest as `top<i>_label/prob`, the
    cells' probabilities being the top points' weights summed by their nearest cell.
    """
    s = settings
    indices, weights = ranked(outputs, gallery, scale, s.gallery_top_k)
    xy = torch.einsum("bk,bkc->bc", weights, gallery.xy[indices]).numpy()
    lat, lon = to_latlon(xy[:, 0], xy[:, 1], geography.crs)
    if s.snap_to_land and geography.border is not None:
        lat, lon = snap_inside(geography.border, lat, lon)
    result = {"lat": np.asarray(lat), "lon": np.asarray(lon)}
    if not every:
        return result
    points = gallery.latlon[indices].numpy()  # (B, k, 2)
    result["expected_error_km"] = expected_error_km(weights.numpy(), lat, lon, points)
    cells = torch.zeros(len(weights), geography.n_classes, dtype=torch.float64)
    cells.scatter_add_(1, gallery.labels[indices], weights)
    labels, chances = top_cells(cells.numpy(), n_cells)
    result["label"], result["prob"] = labels[:, 0], chances[:, 0]
    for i in range(labels.shape[1]):
        result[f"top{i + 1}_label"], result[f"top{i + 1}_prob"] = labels[:, i], chances[:, i]
    return result
