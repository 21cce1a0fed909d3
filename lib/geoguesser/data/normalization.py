"""The channel mean and std the network normalizes with: pretrained, ImageNet's, or measured.

Image statistics are a fact of the data and of the weights, not of the network: they live
here so that the data module can choose them (a checkpoint records them) without importing
the model, and the backbones read ImageNet's from here.
"""

from __future__ import annotations

import numpy as np

from geoguesser.config import TrainSettings
from geoguesser.data.views import LocationDataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrained_normalization(name: str) -> tuple[list[float], list[float]]:
    """The channel mean and std that `name`'s pretrained weights were trained with.

    timm models carry them in their pretrained config (EfficientNet-Lite's are 0.5, not
    ImageNet's), torchvision models in their weights' transforms; tinycnn has no pretrained
    weights and gets ImageNet's. Read without downloading anything.
    """
    if name.startswith("timm/"):
        import timm

        config = timm.models.get_pretrained_cfg(name.removeprefix("timm/"))
        if config is not None:
            return list(config.mean), list(config.std)
    elif name != "tinycnn":
        import torchvision

        transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        return list(transforms.mean), list(transforms.std)
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


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
