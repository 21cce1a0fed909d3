"""Coordinates: projection to the local CRS, great-circle distances and the coordinate scaler.

Distances for evaluation are great-circle (haversine) on the mean Earth sphere, as in the
LUMEN challenge. Learning happens in a projected CRS where Euclidean distance is metric,
so MSE on projected coordinates means something. The default, EPSG:3766, is the one the
original team used: HTRS96 / Croatia LCC, a Lambert conformal conic with standard parallels
at 43.08 and 45.92 N (Croatia TM, a transverse Mercator, is EPSG:3765; either works).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
DEFAULT_CRS = "EPSG:3766"  # HTRS96 / Croatia LCC, as in the original work
WGS84 = "EPSG:4326"


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km between arrays of points given in degrees (float64)."""
    lat1, lon1, lat2, lon2 = (
        np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2)
    )
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_km_torch(lat1, lon1, lat2, lon2):
    """Great-circle distance in km for tensors in degrees, on their own device.

    Computed in float64 where the device has it (MPS does not) because float32 degrees
    carry only ~1 m of precision and the sine of a tiny difference loses more; the result
    is returned in the inputs' floating dtype so it composes with the rest of the graph.
    """
    import torch  # imported here so that the command line starts fast

    out_dtype = torch.promote_types(lat1.dtype, torch.float32)
    work = torch.float32 if lat1.device.type == "mps" else torch.float64
    lat1, lon1, lat2, lon2 = (torch.deg2rad(t.to(work)) for t in (lat1, lon1, lat2, lon2))
    a = (
        torch.sin((lat2 - lat1) / 2) ** 2
        + torch.cos(lat1) * torch.cos(lat2) * torch.sin((lon2 - lon1) / 2) ** 2
    )
    return (2 * EARTH_RADIUS_KM * torch.asin(torch.sqrt(a.clamp(0.0, 1.0)))).to(out_dtype)


@lru_cache(maxsize=16)
def _transformers(crs: str) -> tuple[Transformer, Transformer]:
    projected = CRS.from_user_input(crs)
    forward = Transformer.from_crs(WGS84, projected, always_xy=True)
    inverse = Transformer.from_crs(projected, WGS84, always_xy=True)
    return forward, inverse


def to_projected(lat, lon, crs: str = DEFAULT_CRS) -> tuple[np.ndarray, np.ndarray]:
    """Project degrees to the local CRS; returns (x, y) in metres (easting, northing)."""
    forward, _ = _transformers(crs)
    x, y = forward.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return np.asarray(x), np.asarray(y)


def to_latlon(x, y, crs: str = DEFAULT_CRS) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `to_projected`: (x, y) metres in `crs` back to (lat, lon) degrees."""
    _, inverse = _transformers(crs)
    lon, lat = inverse.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return np.asarray(lat), np.asarray(lon)


@dataclass(frozen=True)
class MinMaxScaler:
    """Maps projected x/y into [0, 1] with bounds fitted on the training split only.

    Kept as plain numbers so it serializes into JSON and into checkpoints, and so that
    the same scaler decodes predictions long after the run folder is gone.
    """

    crs: str
    x_min: float
    x_max: float
    y_min: float
    y_max: float

    @classmethod
    def fit(cls, x, y, crs: str = DEFAULT_CRS) -> MinMaxScaler:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.size == 0:
            raise ValueError("cannot fit a scaler on no points")
        return cls(crs, float(x.min()), float(x.max()), float(y.min()), float(y.max()))

    def _spans(self) -> tuple[float, float]:
        # A single point (or a line) would give a zero span; keep the map invertible.
        return max(self.x_max - self.x_min, 1.0), max(self.y_max - self.y_min, 1.0)

    def transform(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        sx, sy = self._spans()
        return (np.asarray(x) - self.x_min) / sx, (np.asarray(y) - self.y_min) / sy

    def inverse(self, u, v):
        """Normalized back to projected metres; works on numpy arrays and torch tensors alike."""
        sx, sy = self._spans()
        return u * sx + self.x_min, v * sy + self.y_min

    def to_dict(self) -> dict:
        return {
            "crs": self.crs,
            "x_min": self.x_min,
            "x_max": self.x_max,
            "y_min": self.y_min,
            "y_max": self.y_max,
        }

    @classmethod
    def from_dict(cls, data: dict) -> MinMaxScaler:
        return cls(
            str(data["crs"]), *(float(data[k]) for k in ("x_min", "x_max", "y_min", "y_max"))
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> MinMaxScaler:
        return cls.from_dict(json.loads(text))
