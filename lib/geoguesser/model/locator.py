"""The LightningModule: the multi-view network's loss, metrics and decoding (GeoLocator).

The network itself is network.MultiViewNet, kept as `net` (its parameters are the
checkpoints' `net.*` keys); the losses are loss.py's, the optimizer optimization.py's, the
files checkpoint.py's. Retrieval (retrieval.py) may refine a guess among the top cells.
The normalization and the geography travel in the hyper-parameters, so a checkpoint alone
turns photographs into coordinates. The fine-tuning schedule is training.finetuning's, the
feature cache the data module's.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from geoguesser import __version__
from geoguesser.config import TOP_CELLS, TrainSettings
from geoguesser.errors import UserError
from geoguesser.model.augment import augment
from geoguesser.model.evaluation import EvaluationSteps
from geoguesser.model.fusion import concat_refusal, drop_views
from geoguesser.model.geography import Geography
from geoguesser.model.loss import objective_loss
from geoguesser.model.network import MultiViewNet
from geoguesser.model.objectives import n_outputs, split_hybrid
from geoguesser.model.optimization import locator_optimization
from geoguesser.model.retrieval import RETRIEVAL_KEY, RetrievalIndex, refined

# 3: geography.Geography's dict; settings with mean/std (TrainSettings).
# 4: fusion as a module (net.fusion.*, attention's scorer); hybrid heads; "retrieval" index.
CHECKPOINT_FORMAT = 4


class GeoLocator(EvaluationSteps, pl.LightningModule):
    """Network, loss, metrics and decoding: cells by cross-entropy, or normalized x/y by MSE.

    Validation and test steps, and their metrics, are evaluation.EvaluationSteps'.

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
        outputs = n_outputs(s.objective, self.geography.n_classes)
        self.net = MultiViewNet.build(s, outputs, mean, std)
        self._embed = torch.compile(self.net.embed) if s.compile else self.net.embed
        centroids = self.geography.centroids(s.centroid_kind, "latlon")
        self.register_buffer("centroids_latlon", centroids, persistent=False)
        self.add_metrics(self.geography, s.objective)
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
        return objective_loss(outputs, batch, self.settings, self.geography, self.centroids_latlon)

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
            refined(decoded, self.retrieval, fused, probs, s, self.geography, every)
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

    def configure_optimizers(self):
        return locator_optimization(self)

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
