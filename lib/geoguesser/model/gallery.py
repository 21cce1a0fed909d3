"""The contrastive head's gallery: the places it can answer, and their location embeddings.

The gallery is the training split's locations plus `gallery_land_points` points drawn
uniformly by area over the land (geo.sampling.sample_uniform, seeded by the run's seed), so
that the head can answer between and beyond the places it was trained on. Its coordinates
are fixed before the fit (`prepare`, from the training split only) and serve as candidates
of the loss; their embeddings are encoded by the location encoder whenever a checkpoint is
saved, so each checkpoint carries the gallery its weights rank (key `gallery`, plain
tensors, loadable with weights_only=True). Each point also knows its nearest cell (the
run's centroid kind), so a contrastive answer can list cells like the other heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import torch
import torch.nn.functional as F

from geoguesser.geo.coords import to_latlon, to_projected
from geoguesser.geo.sampling import sample_uniform

GALLERY_KEY = "gallery"


@dataclass
class Gallery:
    """Points: projected metres (N, 2), degrees (N, 2), nearest cells (N,), embeddings (N, D).

    `embeddings` is None until encoded (and again once training changes the encoder).
    """

    xy: torch.Tensor
    latlon: torch.Tensor
    labels: torch.Tensor
    embeddings: torch.Tensor | None = None

    @classmethod
    def of_points(cls, xy: np.ndarray, geography, centroid_kind: str) -> Gallery:
        xy = torch.as_tensor(np.asarray(xy), dtype=torch.float64)
        lat, lon = to_latlon(xy[:, 0].numpy(), xy[:, 1].numpy(), geography.crs)
        centroids = geography.centroids(centroid_kind)
        labels = torch.cdist(xy, centroids).argmin(dim=1)
        return cls(xy, torch.tensor(np.column_stack([lat, lon])), labels)

    def __len__(self) -> int:
        return len(self.xy)

    def to_dict(self) -> dict:
        return {
            "xy": self.xy,
            "latlon": self.latlon,
            "labels": self.labels,
            "embeddings": self.embeddings,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Gallery:
        return cls(
            data["xy"].double(),
            data["latlon"].double(),
            data["labels"].long(),
            data["embeddings"].float(),
        )

    @torch.no_grad()
    def encode(self, encoder, batch: int = 8192) -> None:
        """Fill `embeddings` with `encoder`'s (unit) embeddings of the points, on its device."""
        device = encoder.frequencies.device
        parts = [
            encoder(self.xy[i : i + batch].to(device)).float().cpu()
            for i in range(0, len(self), batch)
        ]
        self.embeddings = F.normalize(torch.cat(parts), dim=1)

    def fits(self, dim: int, n_classes: int) -> bool:
        """Whether the arrays agree in length, the embeddings are of size `dim`, labels cells."""
        n = len(self.xy)
        shapes = (tuple(self.xy.shape), tuple(self.latlon.shape), tuple(self.labels.shape))
        embedded = self.embeddings is not None and tuple(self.embeddings.shape) == (n, dim)
        labels_ok = bool(((self.labels >= 0) & (self.labels < n_classes)).all())
        return shapes == ((n, 2), (n, 2), (n,)) and embedded and labels_ok


def land_points(geography, train_xy: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, 2) projected points uniform over the border, or over the training locations' box."""
    if n == 0:
        return np.zeros((0, 2))
    border = geography.border
    if border is None:
        lat, lon = to_latlon(train_xy[:, 0], train_xy[:, 1], geography.crs)
        border = shapely.box(lon.min(), lat.min(), lon.max(), lat.max())
    points = sample_uniform(border, n, seed, geography.crs)
    x, y = to_projected(points.latitude.to_numpy(), points.longitude.to_numpy(), geography.crs)
    return np.column_stack([x, y])


def prepare(model, datamodule) -> None:
    """Give a contrastive `model` its gallery's points: the training split's and the land's.

    Does nothing for the other objectives. Only the training split is read.
    """
    s = model.settings
    if s.objective != "contrastive":
        return
    table = datamodule.datasets["train"]
    target = table.target_xy.double()
    x, y = model.geography.scaler.inverse(target[:, 0], target[:, 1])
    give_gallery(model, torch.stack([x, y], dim=1).numpy())


def give_gallery(model, train_xy: np.ndarray) -> None:
    """Set `model.gallery` to the training locations `train_xy` (N, 2 metres) and the land's."""
    s = model.settings
    land = land_points(model.geography, train_xy, s.gallery_land_points, s.seed)
    model.gallery = Gallery.of_points(np.vstack([train_xy, land]), model.geography, s.centroid_kind)
