"""The multi-view network and the LightningModule that trains, evaluates and decodes it.

One backbone sees the four views of a location in one batched pass; their features are
fused (`concat`, the original's 4 x D, or `mean`, PIGEON's average of view embeddings) and a
linear head predicts cell logits or normalized x/y. Normalization, the cell centroids, the
scaler, the CRS and the border travel in the hyper-parameters, so a checkpoint alone can
turn photographs into coordinates.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import shapely
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import CatMetric
from torchmetrics.classification import MulticlassAccuracy

from . import __version__
from .backbones import backbone_blocks, build_backbone, feature_size
from .borders import bbox_diagonal_km, snap_inside
from .config import CENTROID_KINDS, DECODINGS, TrainSettings
from .data import IMAGENET_MEAN, IMAGENET_STD, augment
from .errors import UserError
from .geo import MinMaxScaler, haversine_km, to_latlon
from .grid import kept_cells
from .metrics import summarize
from .objectives import decode_classes, haversine_soft_targets

CHECKPOINT_FORMAT = 2  # 2: one `settings` mapping (config.TrainSettings) in the hyper-parameters


class MultiViewNet(nn.Module):
    """uint8 views (B, 4, 3, H, W) -> outputs (B, n_outputs), through one shared backbone."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        n_outputs: int,
        fusion: str,
        mean,
        std,
        dropout=0.0,
    ):
        super().__init__()
        self.backbone = backbone
        self.fusion = fusion
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1))
        fused = feature_dim * 4 if fusion == "concat" else feature_dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(fused, n_outputs))
        self.channels_last = False

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        return (images01 - self.mean) / self.std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized (B, 4, 3, H, W) -> per-view features (B, 4, D), all views in one pass."""
        flat = images.flatten(0, 1)
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        return self.backbone(flat).view(images.shape[0], images.shape[1], -1)

    def fuse_and_head(self, features: torch.Tensor) -> torch.Tensor:
        fused = features.flatten(1) if self.fusion == "concat" else features.mean(dim=1)
        return self.head(fused)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fuse_and_head(self.embed(self.normalize(images.float() / 255.0)))


class FeatureStore:
    """Per-split backbone features of every location, valid while the backbone is frozen.

    The first frozen epoch fills it as a side effect of its forward passes; later frozen
    epochs then train only the head. Kept per process: under DDP a rank sees a shard of
    the data, never fills a whole split, and keeps reading images.
    """

    def __init__(self):
        self.features: dict[str, torch.Tensor] = {}
        self.filled: dict[str, torch.Tensor] = {}

    def put(self, split: str, index: torch.Tensor, features: torch.Tensor, size: int) -> None:
        if split not in self.features:
            self.features[split] = torch.zeros((size, *features.shape[1:]), dtype=torch.float32)
            self.filled[split] = torch.zeros(size, dtype=torch.bool)
        index = index.cpu()
        self.features[split][index] = features.detach().float().cpu()
        self.filled[split][index] = True

    def ready(self, split: str) -> bool:
        return split in self.filled and bool(self.filled[split].all())

    def get(self, split: str) -> torch.Tensor:
        return self.features[split]

    def clear(self) -> None:
        self.features.clear()
        self.filled.clear()


def geography_of(cells, scaler: MinMaxScaler, border=None) -> dict:
    """Everything about the map a checkpoint needs, as plain lists and numbers."""
    classes = kept_cells(cells)
    columns = ["label", "row", "col", "n_train"]
    columns += [f"{kind}_{axis}" for kind in CENTROID_KINDS for axis in ("lat", "lon", "x", "y")]
    return {
        "crs": scaler.crs,
        "scaler": scaler.to_dict(),
        "grid": {k: cells.attrs.get(k) for k in ("cell_km", "cell_deg", "min_train")},
        "cells": {column: classes[column].tolist() for column in columns},
        "border_wkt": shapely.to_wkt(border, rounding_precision=6) if border is not None else None,
        "diagonal_km": bbox_diagonal_km(
            border if border is not None else shapely.box(*classes.total_bounds)
        ),
    }


class GeoLocator(pl.LightningModule):
    """Classification over grid cells or regression of projected x/y, with distance metrics.

    `settings` are the run's training settings (config.TrainSettings, or its plain dict from a
    checkpoint); every default lives in that schema, none here.
    """

    def __init__(
        self,
        geography: dict,
        settings: TrainSettings | dict,
        mean: list[float] = IMAGENET_MEAN,
        std: list[float] = IMAGENET_STD,
    ):
        if isinstance(settings, TrainSettings):
            settings = settings.model_dump(mode="json")
        super().__init__()
        self.save_hyperparameters()
        self.settings = s = TrainSettings.model_validate(settings)
        module = build_backbone(s.backbone, s.weights)
        dim = feature_size(module, s.image_size, s.backbone)
        cells = geography["cells"]
        n_outputs = len(cells["label"]) if s.objective == "classification" else 2
        self.net = MultiViewNet(module, dim, n_outputs, s.fusion, mean, std, s.head_dropout)
        if s.channels_last:
            self.net.channels_last = True
            self.net.backbone.to(memory_format=torch.channels_last)
        self._embed = torch.compile(self.net.embed) if s.compile else self.net.embed
        for kind in CENTROID_KINDS:
            xy = torch.tensor(
                np.column_stack([cells[f"{kind}_x"], cells[f"{kind}_y"]]), dtype=torch.float64
            )
            latlon = torch.tensor(
                np.column_stack([cells[f"{kind}_lat"], cells[f"{kind}_lon"]]), dtype=torch.float64
            )
            self.register_buffer(f"{kind}_xy", xy, persistent=False)
            self.register_buffer(f"{kind}_latlon", latlon, persistent=False)
        self.scaler = MinMaxScaler.from_dict(geography["scaler"])
        self.crs = geography["crs"]
        self.border = (
            shapely.from_wkt(geography["border_wkt"]) if geography.get("border_wkt") else None
        )
        self.diagonal_km = float(geography["diagonal_km"])
        self.fixed_blocks: list[nn.Module] = []
        if s.unfreeze_blocks is not None:
            blocks = backbone_blocks(module)
            self.fixed_blocks = blocks[: max(0, len(blocks) - s.unfreeze_blocks)]
            for block in self.fixed_blocks:
                block.requires_grad_(False)
        self.frozen = s.freeze_epochs > 0
        self.feature_store = FeatureStore()
        self.errors = nn.ModuleDict({split: CatMetric() for split in ("val", "test")})
        if s.objective == "classification":
            self.class_acc = nn.ModuleDict(
                {
                    s: MulticlassAccuracy(num_classes=n_outputs, average="micro")
                    for s in ("val", "test")
                }
            )

    # --- decoding -------------------------------------------------------------------------

    def decode(self, outputs: torch.Tensor, every: bool = False) -> dict[str, np.ndarray]:
        """Latitude/longitude from raw outputs with the configured decoding.

        With `every`, a classifier also reports each (centroid kind, mean/argmax) pair, the
        most likely label and its probability, for comparing decodings after training;
        validation needs only the configured one.
        """
        hp = self.settings
        result: dict[str, np.ndarray] = {}
        if hp.objective == "regression":
            x, y = self.scaler.inverse(outputs[:, 0].double(), outputs[:, 1].double())
            lat, lon = to_latlon(x.cpu().numpy(), y.cpu().numpy(), self.crs)
        else:
            probs = torch.softmax(outputs.float(), dim=1)
            pairs = [(hp.centroid_kind, hp.decode)]
            if every:
                top = probs.max(dim=1)
                result["label"], result["prob"] = (
                    top.indices.cpu().numpy(),
                    top.values.cpu().numpy(),
                )
                pairs = [(kind, how) for kind in CENTROID_KINDS for how in DECODINGS]
            for kind, how in pairs:
                xy = decode_classes(probs, getattr(self, f"{kind}_xy"), how).cpu().numpy()
                lat, lon = to_latlon(xy[:, 0], xy[:, 1], self.crs)
                result[f"{kind}_{how}_lat"], result[f"{kind}_{how}_lon"] = lat, lon
            chosen = f"{hp.centroid_kind}_{hp.decode}"
            lat, lon = result[f"{chosen}_lat"], result[f"{chosen}_lon"]
        if hp.snap_to_land and self.border is not None:
            lat, lon = snap_inside(self.border, lat, lon)
        result["lat"], result["lon"] = np.asarray(lat), np.asarray(lon)
        return result

    @torch.no_grad()
    def locate(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """uint8 views (B, 4, 3, H, W) -> decoded locations; the model must be in eval mode."""
        return self.decode(self.net(images.to(self.device)), every=True)

    # --- training -------------------------------------------------------------------------

    def serves_cached_features(self, split: str) -> bool:
        hp = self.settings
        return (
            hp.feature_cache
            and self.current_epoch < hp.freeze_epochs
            and self.feature_store.ready(split)
        )

    def _outputs(self, batch: dict, split: str) -> torch.Tensor:
        if "features" in batch:
            return self.net.fuse_and_head(batch["features"])
        images = batch["images"].float() / 255.0
        use_store = self.frozen and self.settings.feature_cache
        if split == "train" and self.settings.augment and not use_store:
            images = augment(images)
        images = self.net.normalize(images)
        with torch.no_grad() if self.frozen else nullcontext():
            features = self._embed(images)
        if use_store and self.trainer is not None:
            size = len(self.trainer.datamodule.datasets[split])
            self.feature_store.put(split, batch["index"], features, size)
        return self.net.fuse_and_head(features)

    def _loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        hp = self.settings
        if hp.objective == "regression":
            return F.mse_loss(outputs.float(), batch["target_xy"].float())
        if hp.tau_km is None:
            return F.cross_entropy(outputs.float(), batch["label"])
        latlon = getattr(self, f"{hp.centroid_kind}_latlon")
        targets = haversine_soft_targets(
            batch["latlon"][:, 0], batch["latlon"][:, 1], latlon[:, 0], latlon[:, 1], hp.tau_km
        )
        return F.cross_entropy(outputs.float(), targets.float())

    def on_train_epoch_start(self) -> None:
        self.frozen = self.current_epoch < self.settings.freeze_epochs
        if not self.frozen:
            self.feature_store.clear()

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Frozen parts keep their BatchNorm statistics; once unfrozen the backbone trains again.
        # The mode is set on every batch because Lightning restores each module's mode after
        # validation, and a resumed fit starts from train mode whatever the epoch.
        self.net.backbone.train(not self.frozen)
        for block in self.fixed_blocks:
            block.eval()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        outputs = self._outputs(batch, "train")
        loss = self._loss(outputs, batch)
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(outputs)
        )
        return loss

    def _evaluate(self, batch: dict, split: str) -> None:
        outputs = self._outputs(batch, split)
        self.log(
            f"{split}/loss",
            self._loss(outputs, batch),
            on_epoch=True,
            batch_size=len(outputs),
            sync_dist=True,
        )
        decoded = self.decode(outputs)
        true = batch["latlon"].cpu().numpy()
        errors = haversine_km(true[:, 0], true[:, 1], decoded["lat"], decoded["lon"])
        self.errors[split].update(torch.as_tensor(errors, dtype=torch.float32, device=self.device))
        if self.settings.objective == "classification":
            self.class_acc[split].update(outputs.argmax(dim=1), batch["label"])

    def _log_distances(self, split: str) -> None:
        errors = self.errors[split].compute()
        self.errors[split].reset()
        summary = (
            summarize(errors.cpu().numpy().ravel(), self.diagonal_km) if errors.numel() else {}
        )
        summary.pop("n", None)
        logged = {f"{split}/{key}": float(value) for key, value in summary.items()}
        if self.settings.objective == "classification":
            logged[f"{split}/acc_class"] = float(self.class_acc[split].compute())
            self.class_acc[split].reset()
        headline = {k: v for k, v in logged.items() if k == f"{split}/mean_km"}
        self.log_dict(headline, prog_bar=True)
        self.log_dict({k: v for k, v in logged.items() if k not in headline})

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_distances("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_distances("test")

    def configure_optimizers(self):
        hp = self.settings
        head = [p for name, p in self.named_parameters() if not name.startswith("net.backbone.")]
        backbone = [p for p in self.net.backbone.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": hp.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": hp.backbone_lr})
        optimizer_class = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(groups, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return optimizer
        if hp.scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=hp.plateau_factor, patience=hp.plateau_patience
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"},
            }
        if hp.scheduler == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[g["lr"] for g in groups],
                total_steps=self.trainer.estimated_stepping_batches,
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, self.trainer.max_epochs)
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_train_epoch_end(self) -> None:
        """Step the per-epoch schedulers here, before the epoch's checkpoint is written.

        Lightning steps them only after its checkpoint callback has saved the epoch, so a fit
        resumed from that checkpoint would miss one step and follow another schedule than an
        uninterrupted fit.
        """
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != "epoch":
                continue
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                config.scheduler.step(self.trainer.callback_metrics[config.monitor])
            else:
                config.scheduler.step()

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Lightning's own call: per-step schedulers only (see on_train_epoch_end)."""
        for config in self.trainer.lr_scheduler_configs:
            if config.scheduler is scheduler and config.interval == "step":
                scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["geoguesser"] = {"format": CHECKPOINT_FORMAT, "version": __version__}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> GeoLocator:
    """A trained GeoLocator from a checkpoint file, loaded as data only (weights_only=True).

    The backbone is rebuilt without pretrained weights: the checkpoint has its trained ones.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling refusals, zip errors, truncated files
        # Our words, never torch's: for some files its text suggests weights_only=False.
        reason = (
            "the file ends early"
            if isinstance(exc, EOFError)
            else "damaged, another format, or holding objects other than tensors and plain"
            " data, which are refused unread"
        )
        raise UserError(f"{path}: not a loadable checkpoint ({reason})") from None
    marker = checkpoint.get("geoguesser") if isinstance(checkpoint, dict) else None
    if not isinstance(marker, dict):
        raise UserError(f"{path}: not a geoguesser checkpoint")
    if marker.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path}: made by geoguesser {marker.get('version')} in checkpoint format "
            f"{marker.get('format')}; this version reads format {CHECKPOINT_FORMAT}: "
            "predict with the version that trained it, or retrain"
        )
    hparams = checkpoint["hyper_parameters"]
    # The trained weights are in the state dict; the pretrained file need not exist here.
    settings = {**hparams["settings"], "weights": None, "compile": False}
    model = GeoLocator(hparams["geography"], settings, hparams["mean"], hparams["std"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
