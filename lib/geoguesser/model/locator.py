"""The multi-view network, and the LightningModule that is its loss, metrics and decoding.

One backbone sees the views of a location in one batched pass; their features are fused
(fusion.py: `concat`, the original's 4 x D; `mean`, PIGEON's average of view embeddings; or
learned attention) and a linear head predicts cell logits, normalized x/y, or both cells and
offsets (hybrid). Retrieval (retrieval.py) may then refine a guess among the top cells.
The normalization and the geography travel in the hyper-parameters, so a checkpoint alone
turns photographs into coordinates. The fine-tuning schedule and the optimizer are
finetuning.py's, the feature cache is the data module's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from geoguesser import __version__
from geoguesser.atomic import atomic_path
from geoguesser.config import TOP_CELLS, TrainSettings
from geoguesser.data.views import augment
from geoguesser.errors import UserError
from geoguesser.geo.borders import snap_inside
from geoguesser.geo.coords import to_latlon
from geoguesser.geo.metrics import GeoErrors
from geoguesser.model.backbones import build_backbone, feature_size
from geoguesser.model.fusion import ViewFusion, concat_refusal, drop_views
from geoguesser.model.geography import Geography
from geoguesser.model.objectives import (
    haversine_soft_targets,
    hybrid_outputs,
    offset_loss,
    split_hybrid,
)
from geoguesser.model.retrieval import RETRIEVAL_KEY, RetrievalIndex
from geoguesser.training.finetuning import optimization, split_backbone

# 3: geography.Geography's dict; settings with mean/std (TrainSettings).
# 4: fusion as a module (net.fusion.*, attention's scorer); hybrid heads; "retrieval" index.
CHECKPOINT_FORMAT = 4


def band(height: int, view_rows: tuple[float, float]) -> tuple[int, int]:
    """First and past-the-last pixel row of the band `view_rows` of a view `height` tall.

    Street View photographs put the horizon at mid-height: sky and road, the same all over
    the country, fill the rest. Never empty: a band thinner than a row keeps one row.
    """
    top = min(round(view_rows[0] * height), height - 1)
    return top, max(top + 1, round(view_rows[1] * height))


class MultiViewNet(nn.Module):
    """uint8 views (B, V, 3, H, W) -> outputs (B, n_outputs), through one shared backbone.

    The views' features are fused by fusion.ViewFusion (any V from 1 to 4 for `mean` and
    `attention`), then a linear head; `fused` is the embedding retrieval searches in.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        n_outputs: int,
        fusion: str,
        mean,
        std,
        dropout=0.0,
        view_rows=(0.0, 1.0),
    ):
        super().__init__()
        self.backbone = backbone
        self.view_rows = tuple(view_rows)
        self.fusion = ViewFusion(fusion, feature_dim)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.fusion.out_dim, n_outputs))
        self.channels_last = False

    @classmethod
    def build(cls, settings: TrainSettings, n_outputs: int, mean, std) -> MultiViewNet:
        """The network the settings describe: backbone (its feature size measured) and head."""
        s = settings
        backbone = build_backbone(s.backbone, s.weights)
        top, bottom = band(s.image_size, s.view_rows)
        dim = feature_size(backbone, s.image_size, s.backbone, height=bottom - top)
        net = cls(backbone, dim, n_outputs, s.fusion, mean, std, s.head_dropout, s.view_rows)
        if s.channels_last:
            net.channels_last = True
            net.backbone.to(memory_format=torch.channels_last)
        return net

    def backbone_input(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) in [0, 1] -> the band of rows `view_rows`, normalized."""
        top, bottom = band(images01.shape[-2], self.view_rows)
        return (images01[..., top:bottom, :] - self.mean) / self.std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized (B, V, 3, H, W) -> per-view features (B, V, D), all views in one pass."""
        flat = images.flatten(0, 1)
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        return self.backbone(flat).view(images.shape[0], images.shape[1], -1)

    def fused(self, features: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        return self.fusion(features, present)

    def fuse_and_head(
        self, features: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.head(self.fused(features, present))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fuse_and_head(self.embed(self.backbone_input(images.float() / 255.0)))


class GeoLocator(pl.LightningModule):
    """Network, loss, metrics and decoding: cells by cross-entropy, or normalized x/y by MSE.

    `geography` is a geography.Geography (or its dict, from a checkpoint); `settings` the run's
    training settings (config.TrainSettings, or its dict); `mean`/`std` the normalization.
    """

    def __init__(
        self, geography: Geography | dict, settings: TrainSettings | dict, mean: list, std: list
    ):
        if isinstance(geography, Geography):
            geography = geography.to_dict()
        if isinstance(settings, TrainSettings):
            settings = settings.model_dump(mode="json")
        super().__init__()
        # For the checkpoint only; TensorBoard gets the user's settings (train.py).
        self.save_hyperparameters(logger=False)
        self.settings = s = TrainSettings.model_validate(settings)
        self.geography = Geography.from_dict(geography)
        outputs = {
            "classification": self.geography.n_classes,
            "hybrid": hybrid_outputs(self.geography.n_classes),
            "regression": 2,
        }[s.objective]
        self.net = MultiViewNet.build(s, outputs, mean, std)
        self._embed = torch.compile(self.net.embed) if s.compile else self.net.embed
        centroids = self.geography.centroids(s.centroid_kind, "latlon")
        self.register_buffer("centroids_latlon", centroids, persistent=False)
        self.metrics = nn.ModuleDict(
            {split: GeoErrors(self.geography.diagonal_km) for split in ("val", "test")}
        )
        if s.objective != "regression":
            accuracy = MulticlassAccuracy(self.geography.n_classes, average="micro")
            self.class_acc = nn.ModuleDict({x: accuracy.clone() for x in ("val", "test")})
        self.retrieval: RetrievalIndex | None = None  # set by retrieval.attach, or a checkpoint

    def fused(self, batch: dict) -> torch.Tensor:
        """The fused embedding (B, F) of a batch of views, or of cached backbone features.

        While training, `view_dropout` hides views at random (the same way for both).
        """
        if "features" in batch:
            features = batch["features"]
        else:
            images = batch["images"].float() / 255.0
            if self.training and self.settings.augment and images.shape[1] == 4:
                images = augment(images)
            features = self._embed(self.net.backbone_input(images))
        present = batch.get("present")
        if self.training and self.settings.view_dropout > 0:
            b, v = features.shape[:2]
            present = drop_views(b, v, self.settings.view_dropout, features.device)
        return self.net.fused(features, present)

    def forward(self, batch: dict) -> torch.Tensor:
        """Network outputs of a batch of views, or of cached backbone features."""
        return self.net.head(self.fused(batch))

    def logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """The cell logits of a classification or hybrid output."""
        if self.settings.objective == "hybrid":
            return split_hybrid(outputs, self.geography.n_classes)[0]
        return outputs

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        s = self.settings
        if s.objective == "regression":
            return F.mse_loss(outputs.float(), batch["target_xy"].float())
        logits = self.logits(outputs)
        if s.tau_km is None:
            loss = F.cross_entropy(logits.float(), batch["label"])
        else:
            true, cells = batch["latlon"], self.centroids_latlon
            soft = haversine_soft_targets(
                true[:, 0], true[:, 1], cells[:, 0], cells[:, 1], s.tau_km
            )
            loss = F.cross_entropy(logits.float(), soft.float())
        if s.objective == "hybrid":
            _, offsets = split_hybrid(outputs, self.geography.n_classes)
            scaler = self.geography.scaler
            x, y = scaler.inverse(
                batch["target_xy"][:, 0].double(), batch["target_xy"][:, 1].double()
            )
            true_xy = torch.stack([x, y], dim=1)
            centroids = self.geography.centroids(s.centroid_kind).to(true_xy.device)
            side = self.geography.cell_side_m
            loss = loss + s.offset_weight * offset_loss(
                offsets, batch["label"], true_xy, centroids, side
            )
        return loss

    def decode(
        self,
        outputs: torch.Tensor,
        every: bool = False,
        fused: torch.Tensor | None = None,
        top_k: int = TOP_CELLS,
    ) -> dict[str, np.ndarray]:
        """Latitude/longitude with the configured decoding (see Geography.decode).

        With a retrieval index and the batch's `fused` embeddings, the guess is refined by
        the nearest training locations among the top cells (`lat`/`lon`); the head's own
        guess stays in `head_lat`/`head_lon` when `every`.
        """
        s = self.settings
        decoded = self.geography.decode(
            outputs, s.objective, s.centroid_kind, s.decode, s.snap_to_land, every, top_k
        )
        if self.retrieval is not None and fused is not None:
            probs = torch.softmax(self.logits(outputs).detach().float(), dim=1)
            xy = self.retrieval.refine(fused, probs, s.retrieval_cells, s.retrieval_neighbors)
            lat, lon = to_latlon(xy[:, 0], xy[:, 1], self.geography.crs)
            if s.snap_to_land and self.geography.border is not None:
                lat, lon = snap_inside(self.geography.border, lat, lon)
            if every:
                decoded["head_lat"], decoded["head_lon"] = decoded["lat"], decoded["lon"]
            decoded["lat"], decoded["lon"] = np.asarray(lat), np.asarray(lon)
        return decoded

    @torch.no_grad()
    def locate(self, images: torch.Tensor, top_k: int = TOP_CELLS) -> dict[str, np.ndarray]:
        """uint8 views (B, V, 3, H, W) -> decoded locations with their confidence (eval mode).

        V is 4 (N, E, S, W), or 1 to 4 for a `mean` or `attention` model.
        """
        if self.settings.fusion == "concat" and images.shape[1] != 4:
            raise UserError(concat_refusal(images.shape[1]))
        fused = self.fused({"images": images.to(self.device)})
        return self.decode(self.net.head(fused), every=True, fused=fused, top_k=top_k)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch), batch)
        n = len(batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def _evaluate(self, batch: dict, split: str) -> None:
        fused = self.fused(batch)
        outputs = self.net.head(fused)
        n = len(outputs)
        self.log(f"{split}/loss", self.loss(outputs, batch), batch_size=n, sync_dist=True)
        decoded = self.decode(outputs, fused=fused)
        self.metrics[split].update(np.stack([decoded["lat"], decoded["lon"]], 1), batch["latlon"])
        if hasattr(self, "class_acc"):
            self.class_acc[split].update(self.logits(outputs).argmax(dim=1), batch["label"])

    def _log_metrics(self, split: str) -> None:
        logged = {f"{split}/{k}": v for k, v in self.metrics[split].compute().items()}
        self.metrics[split].reset()
        if hasattr(self, "class_acc"):
            logged[f"{split}/acc_class"] = self.class_acc[split].compute()
            self.class_acc[split].reset()
        self.log(f"{split}/mean_km", logged.pop(f"{split}/mean_km"), prog_bar=True)
        self.log_dict(logged)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def configure_optimizers(self):
        head = [p for name, p in self.named_parameters() if not name.startswith("net.backbone.")]
        _, trainable = split_backbone(self.net.backbone, self.settings.unfreeze_blocks)
        backbone = [p for module in trainable for p in module.parameters()]
        # Only OneCycle needs the step count (counting makes a train loader, early).
        onecycle = self.settings.scheduler == "onecycle"
        total = self.trainer.estimated_stepping_batches if onecycle else 0
        return optimization(self.settings, head, backbone, total)

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Per-step schedulers only: finetuning.EpochSchedulers steps the per-epoch ones."""
        configs = self.trainer.lr_scheduler_configs
        if any(c.scheduler is scheduler and c.interval == "step" for c in configs):
            scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["geoguesser"] = {"format": CHECKPOINT_FORMAT, "version": __version__}
        if self.retrieval is not None:
            checkpoint[RETRIEVAL_KEY] = self.retrieval.to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint's retrieval index (retrieval.attach wrote it) comes with its weights.

        A checkpoint without one leaves the index in memory as it is: under DDP another
        process may test from the best checkpoint before rank 0 has written the index into it.
        """
        index = checkpoint.get(RETRIEVAL_KEY)
        if index is not None:
            self.retrieval = RetrievalIndex.from_dict(index)


def write_checkpoint(model: GeoLocator, path: str | Path) -> Path:
    """`model` as a checkpoint `load_checkpoint` reads, without a Trainer.

    For a model that never trained (benchmarks, tests of prediction and serving): the
    format marker and the retrieval index come from `on_save_checkpoint`, as in a fit.
    """
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


HPARAMS = ("geography", "settings", "mean", "std")  # GeoLocator's arguments, as saved
MAX_WEIGHT_LINES = 20  # a checkpoint of another network would name every one of its tensors


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> GeoLocator:
    """A trained GeoLocator from a checkpoint file, loaded as data only (weights_only=True).

    The one loader of checkpoints (predict, the server, testing after a fit). The file is
    checked whole, and whatever is wrong with it is a UserError naming the file, one line a
    problem: not a checkpoint, no geoguesser marker, another format, no hyper-parameters,
    settings that no longer validate, weights that do not fit the network (a missing or
    unexpected tensor, another shape). The backbone is rebuilt without pretrained weights:
    the checkpoint has its trained ones.
    """
    path = Path(path)
    checkpoint = _read_checkpoint(path, map_location)
    model = _rebuilt(path, checkpoint.get("hyper_parameters"))
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"{path}: no state_dict (the trained weights)")
    problems = weight_mismatches(model.state_dict(), state)
    if len(problems) > MAX_WEIGHT_LINES:
        more = len(problems) - MAX_WEIGHT_LINES
        problems = [*problems[:MAX_WEIGHT_LINES], f"... and {more} more weight mismatches"]
    if problems:
        raise UserError("\n".join(f"{path}: {problem}" for problem in problems))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # after the checks above, a tensor that cannot be copied in
        raise UserError(f"{path}: weights: {str(exc).splitlines()[-1].strip()[:200]}") from None
    try:
        model.on_load_checkpoint(checkpoint)
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: its retrieval index is damaged ({exc!r})") from None
    if model.retrieval is not None and not _index_fits(model):
        index = model.retrieval
        raise UserError(
            f"{path}: its retrieval index does not fit the network (embeddings"
            f" {tuple(index.embeddings.shape)}, xy {tuple(index.xy.shape)}, labels"
            f" {tuple(index.labels.shape)}, for {model.net.fusion.out_dim} features"
            f" and {model.geography.n_classes} cells)"
        )
    return model.eval()


def _index_fits(model: GeoLocator) -> bool:
    """Whether the retrieval index holds N embeddings of the fused size, N points, N cells."""
    index = model.retrieval
    n = len(index.labels) if index.labels.ndim == 1 else -1
    return (
        tuple(index.embeddings.shape) == (n, model.net.fusion.out_dim)
        and tuple(index.xy.shape) == (n, 2)
        and bool(((index.labels >= 0) & (index.labels < model.geography.n_classes)).all())
    )


def _read_checkpoint(path: Path, map_location: str | torch.device) -> dict:
    """The checkpoint's dict, read as data only, if it is a geoguesser one of today's format."""
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
    return checkpoint


def _rebuilt(path: Path, hparams) -> GeoLocator:
    """The untrained network a checkpoint's hyper-parameters describe, or why there is none.

    The settings are validated against today's schema (config.TrainSettings), each problem
    a line; the geography and the normalization are file content too, so anything that
    fails while building from them is the file's fault, said in one line.
    """
    from geoguesser.config import known_setting_problems

    if not isinstance(hparams, dict):
        raise UserError(
            f"{path}: no hyper_parameters (the settings, geography and normalization"
            " the network is rebuilt from)"
        )
    missing = [name for name in HPARAMS if name not in hparams]
    if missing:
        raise UserError(f"{path}: hyper_parameters lack {', '.join(missing)}")
    if not isinstance(hparams["settings"], dict):
        raise UserError(f"{path}: hyper_parameters settings is not a mapping of settings")
    # The trained weights are in the state dict; the pretrained file need not exist here.
    settings = {**hparams["settings"], "weights": None, "compile": False}
    problems = known_setting_problems(TrainSettings, settings)
    if problems:
        raise UserError(
            "\n".join(f"{path}: setting {p} (no longer valid: retrain)" for p in problems)
        )
    try:
        return GeoLocator(hparams["geography"], settings, hparams["mean"], hparams["std"])
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    except Exception as exc:  # built from the file's content: a bad value is the file's fault
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(
            f"{path}: its geography or normalization does not build a network"
            f" ({exc.__class__.__name__}{': ' + text[:200] if text else ''})"
        ) from None


def weight_mismatches(expected: dict, given: dict) -> list[str]:
    """One line for each tensor of `given` that a strict load_state_dict into `expected` refuses."""
    problems = [f"weights: {key} is missing" for key in expected if key not in given]
    unknown = [key for key in given if key not in expected]
    problems += [f"weights: {key} is not part of this network" for key in unknown]
    for key in (key for key in expected if key in given):
        value = given[key]
        if not isinstance(value, torch.Tensor):
            problems.append(f"weights: {key} is not a tensor")
        elif value.shape != expected[key].shape:
            problems.append(
                f"weights: {key} has shape {tuple(value.shape)}; the network's is"
                f" {tuple(expected[key].shape)}"
            )
    return problems
