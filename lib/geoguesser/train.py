"""Training: the Trainer, its callbacks and the frozen-then-unfrozen fine-tuning schedule.

`train(config, table, cells, scaler, run_dir)` is a plain function: it seeds everything,
builds the data module and the model, fits (resuming from `checkpoints/last.ckpt` when an
earlier fit was interrupted), tests the best checkpoint and returns the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from .backbones import DEFAULT_BACKBONE
from .data import GeoDataModule
from .datasets import check_views
from .errors import UserError
from .model import GeoLocator, geography_of


@dataclass
class TrainConfig:
    """Every knob of a training run; defaults follow the original team's setting."""

    objective: str = "classification"
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None  # None, "imagenet", or a local state-dict file
    fusion: str = "concat"
    image_size: int = 224
    normalization: str = "imagenet"  # or "train": channel statistics of the training split
    batch_size: int = 32
    num_workers: int = 4
    dataset_frac: float = 1.0
    augment: bool = True
    image_cache_dir: str | None = None
    feature_cache: bool = True
    head_dropout: float = 0.0
    optimizer: str = "adam"
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 0.0
    scheduler: str = "plateau"
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    freeze_epochs: int = 1
    unfreeze_blocks: int | None = None  # None: the whole backbone
    max_epochs: int = 10
    tau_km: float | None = None
    decode: str = "mean"
    centroid_kind: str = "weighted"
    snap_to_land: bool = False
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    resume: bool = True
    progress_bar: bool = True
    log_every_n_steps: int = 10
    limit_train_batches: float | int | None = None
    limit_val_batches: float | int | None = None
    extra: dict = field(default_factory=dict)  # passed to pl.Trainer as is

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)


MODEL_SETTINGS = [
    "objective", "backbone", "weights", "fusion", "image_size", "head_dropout", "optimizer",
    "lr", "backbone_lr", "weight_decay", "scheduler", "plateau_patience", "plateau_factor",
    "freeze_epochs", "unfreeze_blocks", "tau_km", "decode", "centroid_kind", "snap_to_land",
    "augment", "feature_cache", "channels_last", "compile",
]  # fmt: skip


@dataclass
class TrainResult:
    model: GeoLocator
    best_checkpoint: Path
    last_checkpoint: Path
    val: dict
    test: dict
    epochs: int


def build_model(config: TrainConfig, geography: dict, mean, std) -> GeoLocator:
    settings = {name: getattr(config, name) for name in MODEL_SETTINGS}
    return GeoLocator(geography, mean=list(mean), std=list(std), **settings)


def make_trainer(config: TrainConfig, run_dir: Path, callbacks: list[Callback]) -> pl.Trainer:
    strategy = config.strategy
    if strategy == "ddp" and config.freeze_epochs > 0:
        # Frozen epochs leave the backbone without gradients; DDP must be told to expect that.
        strategy = "ddp_find_unused_parameters_true"
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-epoch{epoch:03d}",
        monitor="val/mean_km",
        mode="min",
        save_last=True,
        auto_insert_metric_name=False,
    )
    limits = {
        key: value
        for key, value in (
            ("limit_train_batches", config.limit_train_batches),
            ("limit_val_batches", config.limit_val_batches),
        )
        if value is not None
    }
    return pl.Trainer(
        max_epochs=config.max_epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=strategy,
        precision=config.precision,
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="epoch"), *callbacks],
        logger=TensorBoardLogger(save_dir=str(run_dir), name="tb", version=""),
        default_root_dir=str(run_dir),
        # Reloading each epoch (workers restart each epoch anyway) lets the loaders switch
        # between images and cached features, and seeds the shuffle by epoch, so a resumed
        # run sees the same batches as an uninterrupted one.
        reload_dataloaders_every_n_epochs=1,
        log_every_n_steps=config.log_every_n_steps,
        enable_progress_bar=config.progress_bar,
        enable_model_summary=config.progress_bar,
        **limits,
        **config.extra,
    )


def train(
    config: TrainConfig,
    table: pd.DataFrame,
    cells,
    scaler,
    run_dir: str | Path,
    border=None,
    callbacks: list[Callback] | None = None,
) -> TrainResult:
    """Fit, resume if interrupted, test the best checkpoint; returns metrics and paths."""
    run_dir = Path(run_dir)
    problems = check_views(table)
    if problems:
        raise UserError("\n".join(map(str, problems)))
    pl.seed_everything(config.seed, workers=True)
    torch.set_float32_matmul_precision("high")  # TF32 on Ampere and newer; no effect on CPU
    datamodule = GeoDataModule(
        table,
        image_size=config.image_size,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        normalization=config.normalization,
        cache_dir=config.image_cache_dir,
        dataset_frac=config.dataset_frac,
        seed=config.seed,
    )
    datamodule.setup("fit")
    for split in ("train", "val"):
        if len(datamodule.datasets[split]) == 0:
            raise UserError(
                f"the {split} split is empty: use more locations or other split fractions"
            )
    model = build_model(
        config, geography_of(cells, scaler, border), datamodule.mean, datamodule.std
    )
    trainer = make_trainer(config, run_dir, callbacks or [])
    last = run_dir / "checkpoints" / "last.ckpt"
    resume_from = str(last) if config.resume and last.exists() else None
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    test = {}
    if len(datamodule.datasets["test"]):
        trainer.test(model, datamodule=datamodule, ckpt_path=str(best), verbose=False)
        test = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    return TrainResult(model, best, last, val, test, trainer.current_epoch)
