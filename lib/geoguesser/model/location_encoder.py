"""The location encoder of the contrastive head: projected coordinates -> a unit embedding.

GeoCLIP's idea at the scale of one country: random Fourier features of the coordinates at
several scales, then a small MLP. The input is the projected plane (the run's CRS, EPSG:3766
by default) in kilometres, with fixed scales rather than the training split's min-max
scaler: a scale then means the same distance in every run, and the features are
shift-invariant, so no origin needs fitting. A scale `sigma` km draws angular frequencies
from N(0, 1 / sigma^2) radians per km, so that the dot product of its features
approximates the Gaussian kernel exp(-d^2 / (2 sigma^2)) of the distance d (Rahimi and
Recht's random features): two points sigma km apart are still 0.6 alike, 3 sigma apart no
longer. The 2 km scale tells villages apart, the 128 km one regions. The frequencies are
drawn once from a fixed seed and kept as buffers, so a checkpoint carries them with the
weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FREQUENCY_SEED = 0  # the frequencies are part of the model: the same in every run


def fourier_frequencies(sigmas_km: list[float], n: int) -> torch.Tensor:
    """(S, 2, n) float64 frequencies in cycles per km, scale s's of std 1 / (2 pi sigma_s)."""
    generator = torch.Generator().manual_seed(FREQUENCY_SEED)
    gaussian = torch.randn(len(sigmas_km), 2, n, generator=generator, dtype=torch.float64)
    sigmas = torch.tensor(sigmas_km, dtype=torch.float64)[:, None, None]
    return gaussian / (2 * math.pi * sigmas)


class LocationEncoder(nn.Module):
    """(N, 2) projected metres -> (N, dim) unit embeddings.

    Each scale's [cos, sin] features are concatenated and read by a two-layer MLP. The
    phases are computed in float64: at 2 km a coordinate 600 km from the origin turns
    through ~2000 radians, where float32 would lose the village.
    """

    def __init__(self, sigmas_km: list[float], frequencies: int, dim: int, hidden: int = 256):
        super().__init__()
        self.register_buffer("frequencies", fourier_frequencies(sigmas_km, frequencies))
        n_features = 2 * len(sigmas_km) * frequencies
        self.mlp = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.out = nn.Linear(hidden, dim)

    def features(self, xy_m: torch.Tensor) -> torch.Tensor:
        """(N, 2) metres -> (N, 2 S n) random Fourier features (float32)."""
        km = xy_m.to(torch.float64) / 1000.0
        phase = 2 * math.pi * torch.einsum("nc,scf->nsf", km, self.frequencies)
        return torch.cat([phase.cos(), phase.sin()], dim=2).flatten(1).float()

    def forward(self, xy_m: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.out(self.mlp(self.features(xy_m))), dim=1)
