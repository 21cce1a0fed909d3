"""Feeding the network: a Dataset of four-view locations, and the LightningDataModule.

Items carry uint8 views (4, 3, S, S) in N, E, S, W order; conversion to float,
normalization and augmentation happen on the accelerator, in the model, where they are
cheap and where a checkpoint carries them along. While the backbone is frozen, the data
module serves its features instead of images: it owns that cache, fills it once per fit
with the network it was handed, and drops it when the backbone is unfrozen.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch import distributed
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from geoguesser.config import TrainSettings
from geoguesser.data.image_cache import ImageCache, decode_location
from geoguesser.geo.splits import SPLITS
from geoguesser.model.backbones import IMAGENET_MEAN, IMAGENET_STD, pretrained_normalization

EAST_WEST_SWAPPED = [0, 3, 2, 1]  # mirrored, the view that looked east now looks west


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

    def __init__(self, features: torch.Tensor, base: LocationDataset):
        self.features, self.base = features, base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        return {"features": self.features[i], **self.base.targets(i)}


def channel_stats(
    dataset: LocationDataset, max_locations: int = 512, seed: int = 0
) -> tuple[list, list]:
    """Per-channel mean and std in [0, 1] over (a seeded sample of) the training views."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(dataset), size=min(max_locations, len(dataset)), replace=False)
    total = np.zeros(3)
    squares = np.zeros(3)
    count = 0
    for i in chosen:
        pixels = dataset.views(int(i)).reshape(-1, 3).astype(np.float64) / 255.0
        total += pixels.sum(0)
        squares += (pixels**2).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


def normalization(settings: TrainSettings, train: LocationDataset) -> tuple[list, list]:
    """The channel mean and std the network normalizes with (a checkpoint records them).

    Explicit `mean`/`std` settings first (a local weights file trained otherwise), then
    `normalization`: what the backbone's pretrained weights expect, ImageNet's, or the
    training split's own statistics.
    """
    if settings.mean is not None:
        return list(settings.mean), list(settings.std)
    if settings.normalization == "train":
        return channel_stats(train, seed=settings.seed)
    if settings.normalization == "imagenet":
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return pretrained_normalization(settings.backbone)


@torch.no_grad()
def backbone_features(
    net, dataset: LocationDataset, batch_size: int, workers: int, store: dict | None = None
) -> torch.Tensor:
    """(N, 4, D) features of every location by `net`'s backbone in eval mode (frozen).

    `store` maps (dataset folder, uuid) to a location's features: those it has are reused,
    the others computed and added. Its owner keeps it to one frozen backbone.
    """
    store = {} if store is None else store
    keys = list(zip(dataset.dirs, dataset.uuids, strict=True))
    missing = [i for i, key in enumerate(keys) if key not in store]
    if missing:
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        subset = torch.utils.data.Subset(dataset, missing)
        loader = DataLoader(subset, batch_size=batch_size, num_workers=workers)
        done = 0
        for batch in loader:
            images = batch["images"].to(device).float() / 255.0
            for features in net.embed(net.backbone_input(images)).float().cpu():
                store[keys[missing[done]]] = features
                done += 1
        net.train(was_training)
    return torch.stack([store[key] for key in keys])


def mirror_scene(images: torch.Tensor) -> torch.Tensor:
    """The whole scene mirrored left-right: each view flipped, and east and west exchanged.

    A plain horizontal flip of every view would show a westward scene labelled east.
    """
    return images[:, EAST_WEST_SWAPPED].flip(-1)


def augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training augmentation that keeps each view's heading meaningful.

    images: float (B, 4, 3, H, W) in [0, 1]. Half the locations are mirrored (see
    `mirror_scene`); brightness and contrast change per location, since the four views
    were taken at the same moment.
    """
    b = images.shape[0]
    device = images.device
    flip = torch.rand(b, generator=generator).to(device) < 0.5
    images = torch.where(flip[:, None, None, None, None], mirror_scene(images), images)
    brightness = (0.8 + 0.4 * torch.rand(b, generator=generator)).to(device, images.dtype)
    contrast = (0.8 + 0.4 * torch.rand(b, generator=generator)).to(device, images.dtype)
    mean = images.mean(dim=(1, 2, 3, 4), keepdim=True)
    images = (images - mean) * contrast[:, None, None, None, None] + mean
    return (images * brightness[:, None, None, None, None]).clamp(0, 1)


class EpochShuffle(DistributedSampler):
    """A permutation decided by (seed, epoch) alone, however often the loader is iterated;
    process `rank` of `world` takes every world-th location of it.

    A DataLoader's own generator advances each time an iterator is made (Lightning makes an
    extra one when it resumes a fit), so the order would depend on history. Under DDP the
    permutation is padded with its first locations to a multiple of `world` (every process
    must take as many steps); being a DistributedSampler, Lightning leaves it in place
    rather than wrapping it in a sampler of its own, whose order differed after a resume.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1):
        # No DistributedSampler.__init__: it wants a dataset and an initialized process group.
        self.size, self.seed, self.rank, self.num_replicas = size, seed, rank, world
        self.epoch = 0  # Lightning's set_epoch writes here; the seed already holds the epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.num_replicas)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.size, generator=generator).tolist()
        order += order[: len(self) * self.num_replicas - self.size]
        return iter(order[self.rank :: self.num_replicas])


class EvalShard(DistributedSampler):
    """Process r of W evaluates locations r, r + W, r + 2W, ...: each exactly once in all.

    Lightning's own distributed sampler pads the shards with repeated locations so that
    every process gets as many; validation and test would count those twice. Being a
    DistributedSampler, this one is left in place by Lightning; the shards may differ by
    one location, and metrics.GeoErrors gathers shards of any length.
    """

    def __init__(self, dataset: Dataset):
        super().__init__(dataset, shuffle=False, drop_last=False)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class GeoDataModule(pl.LightningDataModule):
    """Train/val/test loaders over the enriched table, with optional image and feature caches.

    `serve_features_of(net)` (train.py calls it) turns the feature cache on: while the epoch
    is below `freeze_epochs` the train and val loaders yield `net`'s backbone features,
    computed once, in place of images; with a backbone frozen for the whole fit the test
    loader does too. The network never reads the data module.

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
        self.frozen_net = None

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

    def serve_features_of(self, net) -> None:
        self.frozen_net = net

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
            use_features = self.frozen_net is not None and frozen_throughout
        else:
            use_features = self.frozen_net is not None and epoch < s.freeze_epochs
        if not use_features:
            if self.features:  # the backbone is training now: every cached feature is stale
                self.features.clear()
                self.store = {}
            return images
        if split not in self.features:
            self.features[split] = backbone_features(
                self.frozen_net, images, self.batch_size, self.workers_for(images), self.store
            )
        return FeatureDataset(self.features[split], images)

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
