"""The Datasets the network is fed: four-view locations, or their cached backbone features.

Items carry uint8 views (4, 3, S, S) in N, E, S, W order; conversion to float,
normalization and augmentation happen on the accelerator, in the model, where they are
cheap and where a checkpoint carries them along (data.datamodule holds the loaders).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from geoguesser.data.image_cache import ImageCache, decode_location


class LocationDataset(Dataset):
    """Rows of a (enriched or unlabelled) table: views plus targets when the table has them."""

    def __init__(
        self, table: pd.DataFrame, image_size: int, caches: dict[str, ImageCache] | None = None
    ):
        self.uuids = table.uuid.astype(str).tolist()
        self.dirs = table.dataset_dir.astype(str).tolist()
        self.image_size = image_size
        self.caches = caches
        n = len(table)
        self.labels = torch.tensor(
            table["label"].to_numpy() if "label" in table else np.full(n, -1), dtype=torch.long
        )
        xy = (
            table[["x_norm", "y_norm"]].to_numpy() if "x_norm" in table else np.full((n, 2), np.nan)
        )
        self.target_xy = torch.tensor(xy, dtype=torch.float32)
        latlon = table[["latitude", "longitude"]].to_numpy(dtype=float)
        self.latlon = torch.tensor(latlon, dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.uuids)

    def views(self, i: int) -> np.ndarray:
        if self.caches is not None:
            return self.caches[self.dirs[i]][self.uuids[i]]
        return decode_location(self.dirs[i], self.uuids[i], self.image_size)

    def targets(self, i: int) -> dict:
        return {
            "label": self.labels[i],
            "target_xy": self.target_xy[i],
            "latlon": self.latlon[i],
            "index": i,
        }

    def __getitem__(self, i: int) -> dict:
        images = torch.from_numpy(np.array(self.views(i))).permute(
            0, 3, 1, 2
        )  # copy: cache is read-only
        return {"images": images, **self.targets(i)}


class FeatureDataset(Dataset):
    """Cached per-view backbone features in place of images, with the same targets."""

    def __init__(
        self, features: torch.Tensor, base: LocationDataset, mirrored: torch.Tensor | None = None
    ):
        self.features, self.base, self.mirrored = features, base, mirrored

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = {"features": self.features[i], **self.base.targets(i)}
        if self.mirrored is not None:  # test-time mirroring (model.tta's MIRRORED_FEATURES)
            item["mirrored_features"] = self.mirrored[i]
        return item
