"""How the views of a location become one feature vector, for any number of views.

Per-view features (B, V, D) with an optional presence mask (B, V) become (B, F):

- `concat` (the original work): the four views side by side, F = 4 D. Each position in the
  vector means one heading, so it needs all four views, in N, E, S, W order.
- `mean` (PIGEON's choice): the average over the views present, F = D.
- `attention`: a learned score per view, softmax over the views present, and the weighted
  average, F = D. The scorer starts at zero, so an untrained model averages like `mean`
  and learns which views deserve more weight.

`mean` and `attention` answer from one to four views; `drop_views` hides views at random
during training so that a model learns to.
"""

from __future__ import annotations

import torch
from torch import nn

from geoguesser.config import FUSIONS
from geoguesser.errors import UserError

MAX_VIEWS = 4


def concat_refusal(views: int) -> str:
    """The one line a `concat` model answers when asked about fewer than four views."""
    return (
        f"this model fuses views by concat and needs all four views (N, E, S, W) of a location,"
        f" not {views}; train with train.fusion=mean or attention to predict from fewer"
    )


class ViewFusion(nn.Module):
    """(B, V, D) per-view features and an optional (B, V) bool mask -> (B, out_dim)."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        if kind not in FUSIONS:
            raise ValueError(f"unknown fusion {kind!r}")
        self.kind = kind
        self.dim = dim  # per-view features (the dry run sizes the feature store with it)
        self.out_dim = dim * MAX_VIEWS if kind == "concat" else dim
        if kind == "attention":
            self.score = nn.Linear(dim, 1)
            nn.init.zeros_(self.score.weight)
            nn.init.zeros_(self.score.bias)

    def forward(self, features: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        b, v, _ = features.shape
        if not 1 <= v <= MAX_VIEWS:
            raise UserError(f"a location has 1 to {MAX_VIEWS} views, not {v}")
        if self.kind == "concat":
            if v != MAX_VIEWS or (present is not None and not bool(present.all())):
                raise UserError(concat_refusal(v if present is None else int(present.sum(1).min())))
            return features.flatten(1)
        if present is None:
            present = torch.ones(b, v, dtype=torch.bool, device=features.device)
        if self.kind == "mean":
            weights = present.to(features.dtype)
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1)
        else:
            scores = self.score(features).squeeze(-1).float()
            weights = torch.softmax(scores.masked_fill(~present, float("-inf")), dim=1)
            weights = weights.to(features.dtype)
        return torch.einsum("bv,bvd->bd", weights, features)


def drop_views(b: int, v: int, rate: float, device=None) -> torch.Tensor:
    """(B, V) presence mask hiding each view with chance `rate`, one view always kept.

    Draws from the global generator, which train.BatchSeed reseeds before every batch.
    """
    present = torch.rand(b, v) >= rate
    keep = torch.randint(v, (b,))
    present[torch.arange(b), keep] = True
    return present.to(device)
