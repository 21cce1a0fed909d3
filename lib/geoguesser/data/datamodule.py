"""The LightningDataModule: train/val/test loaders, with image and backbone-feature caches.

While the backbone is frozen, the data module serves its features instead of images: it
owns that cache, fills it once per fit with the feature function it was handed
(model.features.backbone_features over the fit's network), and drops it when the backbone
is unfrozen. With test-time mirroring (`tta: mirror`) the validation and test splits also
get the mirrored scenes' features, computed the same way (`mirrored=True`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from torch import distributed
from torch.utils.data import DataLoader, Dataset

from geoguesser.config import TrainSettings
from geoguesser.data.image_cache import ImageCache
from geoguesser.data.normalization import normalization
from geoguesser.data.samplers import EpochShuffle, EvalShard
from geoguesser.data.views import FeatureDataset, LocationDataset
from geoguesser.geo.splits import SPLITS


class GeoDataModule(pl.LightningDataModule):
    """Train/val/test loaders over the enriched table, with optional image and feature caches.

    `serve_features_of(features)` (training/fit.py calls it) turns the feature cache on: while the
    epoch is below `freeze_epochs` the train and val loaders yield the backbone features
    `features(dataset, batch_size, workers, store)` computes (model.features.backbone_features
    over the fit's network), once, in place of images; with a backbone frozen for the whole
    fit the test loader does too. The network never reads the data module.

    `feature_store` (optional) is a dict from (dataset folder, uuid) to a location's
    features, shared between fits whose frozen backbone is the same (cross-validation):
    each location goes through the backbone once in all. It is left alone once the backbone
    is unfrozen.
    """

    def __init__(
        self,
        table: pd.DataFrame | str | Path,
        settings: TrainSettings,
        feature_store: dict | None = None,
    ):
        super().__init__()
        self.table_source = table
        self.settings = settings
        self.image_size, self.batch_size = settings.image_size, settings.batch_size
        self.datasets: dict[str, LocationDataset] = {}
        self.features: dict[str, torch.Tensor] = {}
        self.store = {} if feature_store is None else feature_store
        self.frozen_features = None  # a function of (dataset, batch_size, workers, store)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        table = self.table_source
        if not isinstance(table, pd.DataFrame):
            table = pd.read_csv(table, dtype={"uuid": str})
        self.table = table.reset_index(drop=True)
        caches = None
        if self.settings.image_cache_dir is not None:
            caches = {
                directory: ImageCache.open(
                    self.settings.image_cache_dir, directory, group.uuid.tolist(), self.image_size
                )
                for directory, group in self.table.groupby("dataset_dir")
            }
        for split in SPLITS:
            rows = self.table[self.table.split == split].reset_index(drop=True)
            self.datasets[split] = LocationDataset(rows, self.image_size, caches)
        self.mean, self.std = normalization(self.settings, self.datasets["train"])

    def serve_features_of(self, features) -> None:
        self.frozen_features = features

    def workers_for(self, dataset: Dataset) -> int:
        # Workers pay off for JPEG decoding; reading memory-mapped or in-memory arrays is
        # faster in the main process than through worker shared memory (benchmarks/bench_loader.py).
        decoding = isinstance(dataset, LocationDataset) and dataset.caches is None
        return self.settings.num_workers if decoding else 0

    def _dataset(self, split: str, epoch: int) -> Dataset:
        images = self.datasets[split]
        s = self.settings
        frozen_throughout = s.freeze_epochs >= s.max_epochs
        if split == "test":
            use_features = self.frozen_features is not None and frozen_throughout
        else:
            use_features = self.frozen_features is not None and epoch < s.freeze_epochs
        if not use_features:
            if self.features:  # the backbone is training now: every cached feature is stale
                self.features.clear()
                self.store = {}
            return images
        workers = self.workers_for(images)
        if split not in self.features:
            self.features[split] = self.frozen_features(
                images, self.batch_size, workers, self.store
            )
        mirrored = None
        if s.tta == "mirror" and split != "train":
            key = f"{split}/mirrored"
            if key not in self.features:
                self.features[key] = self.frozen_features(
                    images, self.batch_size, workers, self.store, mirrored=True
                )
            mirrored = self.features[key]
        return FeatureDataset(self.features[split], images, mirrored)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        dataset = self._dataset(split, epoch)
        several = distributed.is_available() and distributed.is_initialized()
        if shuffle:
            # Seeded per epoch: the order is reproducible, also after a resume or a reload.
            rank, world = (
                (distributed.get_rank(), distributed.get_world_size()) if several else (0, 1)
            )
            sampler = EpochShuffle(len(dataset), self.settings.seed + epoch, rank, world)
        else:
            sampler = EvalShard(dataset) if several else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.workers_for(dataset),
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
