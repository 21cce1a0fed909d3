"""The training loss of each objective: cross-entropy on cells, MSE on x/y, or both (hybrid).

Classification's targets are the one-hot label or, with `tau_km`, haversine-smoothed ones
(objectives.haversine_soft_targets); with `hierarchy`, the cross-entropy of the cells' coarser
levels is added, weighted by `hierarchy_weight` (hierarchy_loss.py); the hybrid adds its
offsets' loss, weighted by `offset_weight`, in units of the cell's side (objectives.offset_loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geoguesser.config import TrainSettings
from geoguesser.model.geography import Geography
from geoguesser.model.hierarchy_loss import hierarchy_loss
from geoguesser.model.objectives import haversine_soft_targets, offset_loss, split_hybrid


def objective_loss(
    outputs: torch.Tensor,
    batch: dict,
    settings: TrainSettings,
    geography: Geography,
    centroids_latlon: torch.Tensor,
) -> torch.Tensor:
    """The loss of a batch's network `outputs` for the settings' objective.

    `centroids_latlon` are the cells' centroids (K, 2) in degrees, on the outputs' device.
    """
    s = settings
    if s.objective == "regression":
        return F.mse_loss(outputs.float(), batch["target_xy"].float())
    logits = split_hybrid(outputs, geography.n_classes)[0] if s.objective == "hybrid" else outputs
    if s.tau_km is None:
        target = batch["label"]
    else:
        true, cells = batch["latlon"], centroids_latlon
        soft = haversine_soft_targets(true[:, 0], true[:, 1], cells[:, 0], cells[:, 1], s.tau_km)
        target = soft.float()
    loss = F.cross_entropy(logits.float(), target)
    if s.hierarchy:
        levels = geography.level_groups[: s.hierarchy]
        loss = loss + s.hierarchy_weight * hierarchy_loss(logits, target, levels)
    if s.objective == "hybrid":
        _, offsets = split_hybrid(outputs, geography.n_classes)
        scaler = geography.scaler
        x, y = scaler.inverse(batch["target_xy"][:, 0].double(), batch["target_xy"][:, 1].double())
        true_xy = torch.stack([x, y], dim=1)
        centroids = geography.centroids(s.centroid_kind).to(true_xy.device)
        side = geography.cell_side_m
        loss = loss + s.offset_weight * offset_loss(
            offsets, batch["label"], true_xy, centroids, side
        )
    return loss
