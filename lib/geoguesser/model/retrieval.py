"""Retrieval refinement: the head picks the likely cells, the nearest training locations place.

PIGEON refines a cell guess by looking, inside the most likely cells, for the training
locations whose embeddings are closest to the query's. Here the embedding is the fused
feature vector the head reads (model.locator.GeoLocator.fused); the guess becomes the mean, in the
projected plane, of the `retrieval_neighbors` most similar (cosine) training locations
whose cell is among the `retrieval_cells` most probable ones.

The training embeddings travel inside the best checkpoint (key `retrieval`, plain tensors,
loadable with weights_only=True), so a checkpoint alone still predicts. `attach` computes
them once the fit is over, from the best checkpoint's weights; training/fit.py calls it in one line.
Under DDP it is meant for rank 0 only: the other ranks read the index from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lightning_fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader

from geoguesser.atomic import atomic_path
from geoguesser.geo.borders import snap_inside
from geoguesser.geo.coords import to_latlon

RETRIEVAL_KEY = "retrieval"


@dataclass
class RetrievalIndex:
    """Training locations: unit embeddings (N, F), projected metres (N, 2), cell labels (N,)."""

    embeddings: torch.Tensor
    xy: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def build(cls, embeddings: torch.Tensor, xy, labels) -> RetrievalIndex:
        return cls(
            F.normalize(embeddings.detach().float().cpu(), dim=1),
            torch.as_tensor(np.asarray(xy), dtype=torch.float64),
            torch.as_tensor(np.asarray(labels), dtype=torch.long),
        )

    def to_dict(self) -> dict:
        return {"embeddings": self.embeddings, "xy": self.xy, "labels": self.labels}

    @classmethod
    def from_dict(cls, data: dict) -> RetrievalIndex:
        return cls(data["embeddings"].float(), data["xy"].double(), data["labels"].long())

    @torch.no_grad()
    def refine(
        self, fused: torch.Tensor, probs: torch.Tensor, cells: int, neighbors: int
    ) -> np.ndarray:
        """(B, 2) projected guesses: the mean of the nearest candidates among the top cells."""
        query = F.normalize(fused.detach().float().cpu(), dim=1)
        top = probs.detach().cpu().topk(min(cells, probs.shape[1]), dim=1).indices  # (B, C)
        candidate = (self.labels[None, :, None] == top[:, None, :]).any(dim=2)  # (B, N)
        similarity = (query @ self.embeddings.T).masked_fill(~candidate, float("-inf"))
        k = min(neighbors, len(self.labels))
        best = similarity.topk(k, dim=1)
        usable = torch.isfinite(best.values).double()  # fewer candidates than k: skip the rest
        points = self.xy[best.indices]  # (B, k, 2)
        xy = (points * usable[..., None]).sum(1) / usable.sum(1, keepdim=True).clamp_min(1)
        return xy.numpy()


@torch.no_grad()
def training_embeddings(model, datamodule) -> torch.Tensor:
    """(N, F) fused embeddings of the training split, in eval mode (no augmentation).

    Cached backbone features are used while the data module still holds them (a backbone
    frozen for the whole fit); otherwise the images go through the backbone once.
    """
    from geoguesser.data.views import FeatureDataset

    images = datamodule.datasets["train"]
    cached = datamodule.features.get("train")
    dataset = FeatureDataset(cached, images) if cached is not None else images
    loader = DataLoader(
        dataset, batch_size=datamodule.batch_size, num_workers=datamodule.workers_for(dataset)
    )
    was_training = model.training
    model.eval()
    parts = []
    for batch in loader:
        batch = {k: v.to(model.device) for k, v in batch.items() if k in ("images", "features")}
        parts.append(model.fused(batch).float().cpu())
    model.train(was_training)
    return torch.cat(parts)


def attach(model, datamodule, checkpoint: str | Path) -> None:
    """Give `model` the best checkpoint's weights and index, and store the index in that file.

    Does nothing unless the model's settings ask for retrieval.
    """
    if not model.settings.retrieval:
        return
    checkpoint = Path(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    table = datamodule.datasets["train"]
    x, y = model.geography.scaler.inverse(table.target_xy[:, 0], table.target_xy[:, 1])
    xy = torch.stack([x, y], dim=1).double()
    model.retrieval = RetrievalIndex.build(training_embeddings(model, datamodule), xy, table.labels)
    if rank_zero_only.rank != 0:  # under DDP every process builds the index, one writes it
        return
    state[RETRIEVAL_KEY] = model.retrieval.to_dict()
    with atomic_path(checkpoint) as tmp:
        torch.save(state, tmp)


def refined(
    decoded: dict,
    index: RetrievalIndex,
    fused: torch.Tensor,
    probs: torch.Tensor,
    settings,
    geography,
    every: bool,
) -> None:
    """Replace `decoded`'s `lat`/`lon` by the index's refinement of the guess, in place.

    Snapped to land as the head's guess is; with `every`, the head's own guess stays in
    `head_lat`/`head_lon`.
    """
    s = settings
    xy = index.refine(fused, probs, s.retrieval_cells, s.retrieval_neighbors)
    lat, lon = to_latlon(xy[:, 0], xy[:, 1], geography.crs)
    if s.snap_to_land and geography.border is not None:
        lat, lon = snap_inside(geography.border, lat, lon)
    if every:
        decoded["head_lat"], decoded["head_lon"] = decoded["lat"], decoded["lon"]
    decoded["lat"], decoded["lon"] = np.asarray(lat), np.asarray(lon)
