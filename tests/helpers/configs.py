"""Tiny training settings and overrides: what makes the suite's fits and runs take seconds."""

from __future__ import annotations

from pathlib import Path

from helpers.paths import LUMEN_SAMPLE, SAMPLE_WEIGHTS


def tiny_config(**overrides):
    """A training configuration that runs in seconds on a CPU."""
    from geoguesser.config import TrainSettings

    settings = dict(
        backbone="tinycnn", image_size=32, batch_size=16, num_workers=0, max_epochs=2,
        freeze_epochs=1, lr=3e-3, backbone_lr=3e-3, progress_bar=False, log_every_n_steps=1,
        accelerator="cpu", devices=1,
    )  # fmt: skip
    settings.update(overrides)
    return TrainSettings(**settings)


def tiny_overrides(dataset_dir: Path, cache_dir: Path, **train) -> list[str]:
    settings = {
        "image_size": 32, "batch_size": 16, "max_epochs": 2, "freeze_epochs": 1,
        "image_cache_dir": str(cache_dir), **train,
    }  # fmt: skip
    overrides = [f"data.dataset_dirs=[{dataset_dir}]", "grid.cell_km=100", "grid.compare_km=[200]"]
    return overrides + [f"train.{key}={value}" for key, value in settings.items()]


def set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


# What a config's run in the suite may override: where the data, the cache and the weights
# are, and how big it is (image size, epochs, locations per batch, cells); never what it is.
SHRINKING = {
    "name", "data.dataset_dirs", "grid.cell_km", "grid.compare_km", "train.image_size",
    "train.batch_size", "train.max_epochs", "train.freeze_epochs", "train.num_workers",
    "train.image_cache_dir", "train.weights", "train.accelerator",
}  # fmt: skip


def shrunk(config: str, data: Path, few: Path, cache: Path) -> list[str]:
    """The overrides of `configs/<config>`'s run in the suite, on tiny synthetic data.

    demo.yaml runs as the pipeline tests' run, on `data`; sample.yaml on the shared sample
    and its weights where present (frozen all along, as shipped); lumen.yaml keeps
    ResNeXt-101, bf16-mixed, channels-last, a frozen then an unfrozen epoch, the image and
    feature caches and decoding workers, at 32 px on the CPU with random weights (imagenet
    needs a network), on the `few` locations that keep its fit to a minute or two.
    """
    if config == "demo.yaml":
        return [*tiny_overrides(data, cache), "name=tiny"]
    if config == "sample.yaml":
        weights = SAMPLE_WEIGHTS if SAMPLE_WEIGHTS.is_file() else "null"
        real = LUMEN_SAMPLE if LUMEN_SAMPLE.is_dir() else data
        return [
            f"data.dataset_dirs=[{real}]", "train.image_size=64", "train.max_epochs=3",
            "train.freeze_epochs=3", f"train.weights={weights}",
            f"train.image_cache_dir={cache}",
        ]  # fmt: skip
    if config == "lumen.yaml":
        return [
            f"data.dataset_dirs=[{few}]", "train.image_size=32", "train.max_epochs=2",
            "train.freeze_epochs=1", "train.num_workers=2", "train.weights=null",
            "train.accelerator=cpu", f"train.image_cache_dir={cache}",
        ]  # fmt: skip
    raise KeyError(config)
