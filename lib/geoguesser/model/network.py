"""The multi-view network: one shared backbone over the views, their fusion, a linear head.

One backbone sees the views of a location in one batched pass; their features are fused
(fusion.py: `concat`, the original's 4 x D; `mean`, PIGEON's average of view embeddings; or
learned attention) and a linear head predicts cell logits, normalized x/y, or both cells and
offsets (hybrid). A plain nn.Module, built from the settings here and handed to the
LightningModule (locator.GeoLocator), which keeps it as `net`: its attribute names
(`backbone`, `fusion`, `head`, `mean`, `std`) are the checkpoints' state_dict keys.
"""

from __future__ import annotations

import torch
from torch import nn

from geoguesser.config import TrainSettings
from geoguesser.model.backbones import build_backbone, feature_size
from geoguesser.model.fusion import ViewFusion


def band(height: int, view_rows: tuple[float, float]) -> tuple[int, int]:
    """First and past-the-last pixel row of the band `view_rows` of a view `height` tall.

    Street View photographs put the horizon at mid-height: sky and road, the same all over
    the country, fill the rest. Never empty: a band thinner than a row keeps one row.
    """
    top = min(round(view_rows[0] * height), height - 1)
    return top, max(top + 1, round(view_rows[1] * height))


class MultiViewNet(nn.Module):
    """uint8 views (B, V, 3, H, W) -> outputs (B, n_outputs), through one shared backbone.

    The views' features are fused by fusion.ViewFusion (any V from 1 to 4 for `mean` and
    `attention`), then a linear head; `fused` is the embedding retrieval searches in.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        n_outputs: int,
        fusion: str,
        mean,
        std,
        dropout=0.0,
        view_rows=(0.0, 1.0),
    ):
        super().__init__()
        self.backbone = backbone
        self.view_rows = tuple(view_rows)
        self.fusion = ViewFusion(fusion, feature_dim)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.fusion.out_dim, n_outputs))
        self.channels_last = False

    @classmethod
    def build(cls, settings: TrainSettings, n_outputs: int, mean, std) -> MultiViewNet:
        """The network the settings describe: backbone (its feature size measured) and head."""
        s = settings
        backbone = build_backbone(s.backbone, s.weights)
        top, bottom = band(s.image_size, s.view_rows)
        dim = feature_size(backbone, s.image_size, s.backbone, height=bottom - top)
        net = cls(backbone, dim, n_outputs, s.fusion, mean, std, s.head_dropout, s.view_rows)
        if s.channels_last:
            net.channels_last = True
            net.backbone.to(memory_format=torch.channels_last)
        return net

    def backbone_input(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) in [0, 1] -> the band of rows `view_rows`, normalized."""
        top, bottom = band(images01.shape[-2], self.view_rows)
        return (images01[..., top:bottom, :] - self.mean) / self.std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized (B, V, 3, H, W) -> per-view features (B, V, D), all views in one pass."""
        flat = images.flatten(0, 1)
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        return self.backbone(flat).view(images.shape[0], images.shape[1], -1)

    def fused(self, features: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        return self.fusion(features, present)

    def fuse_and_head(
        self, features: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.head(self.fused(features, present))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fuse_and_head(self.embed(self.backbone_input(images.float() / 255.0)))
