"""The one place network outputs become coordinates: Geography's decoding methods.

A regression's normalized x/y go back through the scaler and the CRS; a classifier's
probabilities become the weighted mean (in the projected plane) or the argmax of the
cells' centroids, a hybrid's centroids moved by its offsets first; optionally snapped to
land. A mixin of geography.Geography, whose cells, scaler, border and centroids it reads.
"""

from __future__ import annotations

import numpy as np
import torch

from geoguesser.config import CENTROID_KINDS, DECODINGS, TOP_CELLS
from geoguesser.geo.borders import snap_inside
from geoguesser.geo.coords import to_latlon
from geoguesser.model.confidence import confidence_columns
from geoguesser.model.objectives import decode_classes, split_hybrid


class GeographyDecoding:
    """Network outputs -> latitude, longitude (and, on demand, every decoding and confidence)."""

    def from_normalized(self, xy: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 2) min-max normalized x/y (a regression's output) -> latitude, longitude."""
        xy = xy.detach().double().cpu()
        x, y = self.scaler.inverse(xy[:, 0], xy[:, 1])
        return to_latlon(x.numpy(), y.numpy(), self.crs)

    def from_probabilities(
        self,
        probs: torch.Tensor,
        kind: str = "weighted",
        how: str = "mean",
        offsets: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, K) class probabilities -> latitude, longitude of the decoded centroid.

        `how`: the probability-weighted mean of the centroids (taken in the projected plane,
        where averaging is meaningful) or the most likely cell's centroid. A hybrid's
        `offsets` (B, K, 2), in cell sides, move each centroid first.
        """
        points = self.cell_points(kind, offsets)
        xy = decode_classes(probs.detach().cpu(), points, how).numpy()
        return to_latlon(xy[:, 0], xy[:, 1], self.crs)

    def cell_points(self, kind: str, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Each cell's point in projected metres: (K, 2) centroids, or (B, K, 2) centroids +
        a hybrid's offsets (in cell sides)."""
        centroids = self.centroids(kind)
        if offsets is None:
            return centroids
        return centroids[None] + offsets.detach().double().cpu() * self.cell_side_m

    def decode(
        self,
        outputs: torch.Tensor,
        objective: str,
        kind: str = "weighted",
        how: str = "mean",
        snap: bool = False,
        every: bool = False,
        top_k: int = TOP_CELLS,
    ) -> dict[str, np.ndarray]:
        """Network outputs -> {"lat", "lon"} with the chosen decoding, optionally snapped to land.

        A hybrid's outputs (K logits, then K offsets) decode as a classifier's whose centroids
        are moved by their offsets. With `every`, a classifier also reports each
        (centroid kind, mean/argmax) pair as
        `<kind>_<how>_lat/lon`, the most likely label and its probability, for comparing
        decodings after training, and its confidence (see `confidence_columns`: the expected
        error from the final guess to the `kind` centroids, and the `top_k` likeliest cells);
        validation needs only the chosen one. A regression has no distribution, so its
        `expected_error_km` is NaN and it has no top cells.
        """
        result: dict[str, np.ndarray] = {}
        if objective == "regression":
            lat, lon = self.from_normalized(outputs)
        else:
            logits, offsets = outputs, None
            if objective == "hybrid":
                logits, offsets = split_hybrid(outputs, self.n_classes)
            probs = torch.softmax(logits.detach().float(), dim=1).cpu()
            pairs = [(kind, how)]
            if every:
                top = probs.max(dim=1)
                result["label"], result["prob"] = top.indices.numpy(), top.values.numpy()
                # A hybrid's offsets are relative to its own kind of centroid only.
                kinds = CENTROID_KINDS if offsets is None else (kind,)
                pairs = [(k, h) for k in kinds for h in DECODINGS]
            for k, h in pairs:
                result[f"{k}_{h}_lat"], result[f"{k}_{h}_lon"] = self.from_probabilities(
                    probs, k, h, offsets
                )
            lat, lon = result[f"{kind}_{how}_lat"], result[f"{kind}_{how}_lon"]
        if snap and self.border is not None:
            lat, lon = snap_inside(self.border, lat, lon)
        result["lat"], result["lon"] = np.asarray(lat), np.asarray(lon)
        if every and objective == "regression":
            result["expected_error_km"] = np.full(len(result["lat"]), np.nan)
        elif every:
            centroids = self.centroids(kind, "latlon").numpy()
            result |= confidence_columns(
                probs.numpy(), result["lat"], result["lon"], centroids, top_k
            )
        return result
