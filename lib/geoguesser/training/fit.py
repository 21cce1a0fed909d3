"""Training: train() builds the Trainer and fits, resuming only what can honestly be resumed.

`train(settings, table, cells, scaler, run_dir)` is a plain function: it seeds everything,
builds the data module and the model, fits (continuing `checkpoints/last.ckpt` when it
belongs to an unfinished fit of the same settings and data), tests the best checkpoint and
returns the numbers. A fit killed at any moment and resumed ends where an uninterrupted one
does: checkpoints are written atomically, each batch draws its random numbers from
(seed, epoch, batch) (callbacks.py), the shuffle from (seed, epoch)
(data.samplers.EpochShuffle), and per-epoch schedulers step before the epoch's checkpoint
is written (finetuning.EpochSchedulers).

Several processes (DDP, `devices` x `num_nodes`) each run this same function, as the
command `geoguesser train` (see workflow/fit_step.py, workflow/launch.py): each trains on
its share of the batches; validation and test give each process a disjoint share of the
locations with no duplicates (data.samplers.EvalShard) and gather the errors, so their
metrics count every location exactly once; only rank 0 writes checkpoints, logs and lines.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.callbacks import Callback, LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger

from geoguesser.config import TrainSettings
from geoguesser.data.datamodule import GeoDataModule
from geoguesser.data.validate import check_views
from geoguesser.errors import UserError
from geoguesser.model import gallery, retrieval
from geoguesser.model.features import backbone_features
from geoguesser.model.geography import Geography
from geoguesser.model.locator import GeoLocator
from geoguesser.progress import headless
from geoguesser.training.callbacks import (
    FINGERPRINT_KEY,
    AtomicCheckpointIO,
    BatchSeed,
    EpochCheckpoint,
    EpochLines,
    FitFingerprint,
)
from geoguesser.training.finetuning import EpochSchedulers, FreezeThenUnfreeze
from geoguesser.training.lr_finder import settle_lr

TABLE_COLUMNS = ["uuid", "split", "label", "latitude", "longitude", "x_norm", "y_norm"]


@dataclass
class TrainResult:
    model: GeoLocator
    best_checkpoint: Path
    last_checkpoint: Path
    val: dict
    test: dict
    epochs: int
    processes: int = 1


def fit_fingerprint(settings: TrainSettings, table: pd.DataFrame, geography: Geography) -> str:
    """A hash of everything a fit's result depends on: settings, locations, labels, cells."""
    rows = pd.util.hash_pandas_object(table[TABLE_COLUMNS], index=False).to_numpy()
    payload = json.dumps(
        {"settings": settings.shaping(), "cells": geography.cells}, sort_keys=True
    ).encode()
    return hashlib.sha256(payload + rows.tobytes()).hexdigest()


def resumable(last: Path, fingerprint: str, max_epochs: int) -> tuple[bool, str]:
    """Whether `last` continues this fit, and the line that says what happens."""
    try:
        checkpoint = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:  # removed by rank 0 meanwhile: it starts afresh, and so do we
        return False, f"starting the fit afresh: {last.name} was removed"
    except Exception:  # truncated, zip or unpickling errors: the file cannot be trusted
        raise UserError(
            f"{last}: damaged checkpoint, not resumable; delete it to start the fit afresh"
        ) from None
    stamp = checkpoint.get(FINGERPRINT_KEY, {}) if isinstance(checkpoint, dict) else {}
    epochs_done = int(checkpoint.get("epoch", -1)) + 1 if isinstance(checkpoint, dict) else 0
    if stamp.get("fingerprint") != fingerprint:
        return False, f"starting the fit afresh: {last.name} was made with other settings or data"
    if epochs_done >= max_epochs:
        return False, f"starting the fit afresh: {last.name} is of a finished fit"
    return True, f"resuming the fit after epoch {epochs_done} from {last}"


def clear_checkpoints(directory: Path) -> None:
    """Remove the checkpoints of an earlier fit of this run (only the files it names itself)."""
    for path in [directory / "last.ckpt", *directory.glob("best-epoch*.ckpt")]:
        path.unlink(missing_ok=True)


def several_processes(settings: TrainSettings) -> bool:
    """Whether the fit runs as several processes (Lightning then picks DDP for `auto`)."""
    if settings.strategy == "ddp" or settings.num_nodes > 1:
        return True
    if settings.devices == "auto":
        gpu = settings.accelerator in ("auto", "gpu", "cuda")
        return gpu and torch.cuda.device_count() > 1
    return settings.devices > 1


def make_trainer(settings: TrainSettings, run_dir: Path, callbacks: list[Callback]) -> pl.Trainer:
    strategy = settings.strategy
    if several_processes(settings) and settings.freeze_epochs > 0:
        # The frozen epochs give the backbone no gradients (with the feature cache it is not
        # even run); DDP must be told to expect parameters without them.
        strategy = "ddp_find_unused_parameters_true"
    checkpoint = EpochCheckpoint(
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
            ("limit_train_batches", settings.limit_train_batches),
            ("limit_val_batches", settings.limit_val_batches),
        )
        if value is not None
    }
    # A bar redraws one line: only a terminal shows it as such (piped, it would garble the
    # epoch lines, which share standard output with it).
    bar = settings.progress_bar and not headless() and sys.stdout.isatty()
    return pl.Trainer(
        max_epochs=settings.max_epochs,
        accelerator=settings.accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=strategy,
        precision=settings.precision,
        callbacks=[
            checkpoint,
            LearningRateMonitor(logging_interval="epoch"),
            BatchSeed(settings.seed),
            EpochLines(settings.freeze_epochs),
            FreezeThenUnfreeze(settings.freeze_epochs, settings.unfreeze_blocks),
            EpochSchedulers(),
            *callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        logger=TensorBoardLogger(
            save_dir=str(run_dir), name="tb", version="", default_hp_metric=False
        ),
        default_root_dir=str(run_dir),
        # Reloading each epoch (workers restart each epoch anyway) lets the data module switch
        # from cached features to images at the unfreeze, and seeds the shuffle by epoch, so
        # a resumed run sees the same batches as an uninterrupted one.
        reload_dataloaders_every_n_epochs=1,
        log_every_n_steps=settings.log_every_n_steps,
        enable_progress_bar=bar,
        enable_model_summary=bar,
        **limits,
        **settings.extra,
    )


def checked_datamodule(
    settings: TrainSettings, table: pd.DataFrame, feature_store: dict | None
) -> GeoDataModule:
    """The fit's data module, set up, once its views and its train and val splits are checked."""
    problems = check_views(table)
    if problems:
        raise UserError("\n".join(map(str, problems)))
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")  # TF32 on Ampere and newer; no effect on CPU
    datamodule = GeoDataModule(table, settings, feature_store)
    datamodule.setup("fit")
    for split in ("train", "val"):
        if len(datamodule.datasets[split]) == 0:
            raise UserError(
                f"the {split} split is empty: use more locations or other split fractions"
            )
    return datamodule


def resume_point(last: Path, fingerprint: str, settings: TrainSettings) -> str | None:
    """`last` when the fit continues it, else None (rank 0 then clears the old checkpoints)."""
    resume_from = None
    if last.exists():
        # Every process decides alike from the same file; none writes a checkpoint before
        # all have joined the fit, and only rank 0 clears and says.
        resume, line = resumable(last, fingerprint, settings.max_epochs)
        if resume and settings.resume:
            resume_from = str(last)
        elif rank_zero_only.rank == 0:
            if resume:
                line = "starting the fit afresh: train.resume is false"
            clear_checkpoints(last.parent)
        if rank_zero_only.rank == 0:
            print(line, flush=True)
    return resume_from


def check_shares(datamodule: GeoDataModule, trainer: pl.Trainer) -> None:
    """Refuse val or test splits with fewer locations than processes (a share would be empty)."""
    for split in ("val", "test"):
        n = len(datamodule.datasets[split])
        if 0 < n < trainer.world_size:
            raise UserError(
                f"the {split} split has {n} location(s), fewer than the {trainer.world_size} "
                "training processes: use more locations or fewer devices"
            )


def train(
    settings: TrainSettings,
    table: pd.DataFrame,
    cells,
    scaler,
    run_dir: str | Path,
    border=None,
    callbacks: list[Callback] | None = None,
    feature_store: dict | None = None,
) -> TrainResult:
    """Fit, resume if honestly possible, test the best checkpoint; returns metrics and paths.

    `feature_store`: frozen-backbone features shared between fits (see
    data.datamodule.GeoDataModule).
    """
    run_dir = Path(run_dir)
    datamodule = checked_datamodule(settings, table, feature_store)
    geography = Geography.of(cells, scaler, border)
    fingerprint = fit_fingerprint(settings, table, geography)
    last = run_dir / "checkpoints" / "last.ckpt"
    resume_from = resume_point(last, fingerprint, settings)
    settings = settle_lr(settings, datamodule, geography, run_dir, resume_from)  # train.lr_find
    model = GeoLocator(geography, settings, datamodule.mean, datamodule.std)
    gallery.prepare(model, datamodule)  # a contrastive model's places, from the training split
    if settings.feature_cache and settings.freeze_epochs > 0:
        datamodule.serve_features_of(partial(backbone_features, model.net))
    trainer = make_trainer(settings, run_dir, [FitFingerprint(fingerprint), *(callbacks or [])])
    check_shares(datamodule, trainer)
    # TensorBoard's HPARAMS tab: the user's training settings, and the best validation mean
    # km as hp_metric once the fit is over (the model's hyper-parameters are for checkpoints).
    hparams = settings.model_dump(mode="json")
    trainer.logger.log_hyperparams(hparams)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if checkpoint.best_model_score is not None:
        trainer.logger.log_hyperparams(hparams, {"hp_metric": float(checkpoint.best_model_score)})
    retrieval.attach(model, datamodule, best)  # training embeddings into the best checkpoint
    test = {}
    if len(datamodule.datasets["test"]):
        trainer.test(model, datamodule=datamodule, ckpt_path=str(best), verbose=False)
        test = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    elif rank_zero_only.rank == 0:
        print("the test split is empty (split.fractions): no test", flush=True)
    return TrainResult(model, best, last, val, test, trainer.current_epoch, trainer.world_size)
