"""The LightningModule (GeoLocator): the network, its loss, evaluation and checkpoint put together.

The network is network.MultiViewNet, kept as `net` (the checkpoints' `net.*` keys); the
losses are loss.py's, the files checkpoint.py's, the fine-tuning schedule training's.
Retrieval (retrieval.py) may refine a guess among the top cells. The normalization and the
geography travel in the hyper-parameters: a checkpoint alone turns photographs into places.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from geoguesser.config import TOP_CELLS, TrainSettings
from geoguesser.errors import UserError
from geoguesser.model.augment import augment
from geoguesser.model.checkpoint_contents import CheckpointContents
from geoguesser.model.evaluation import EvaluationSteps
from geoguesser.model.fusion import concat_refusal, drop_views
from geoguesser.model.geography import Geography
from geoguesser.model.hierarchy_loss import check_levels
from geoguesser.model.loss import objective_loss
from geoguesser.model.network import MultiViewNet
from geoguesser.model.objectives import n_outputs, split_hybrid
from geoguesser.model.optimization import OptimizerSteps
from geoguesser.model.retrieval import RetrievalIndex, refined


class GeoLocator(EvaluationSteps, OptimizerSteps, CheckpointContents, pl.LightningModule):
    """Network, loss, metrics and decoding: cells by cross-entropy, or normalized x/y by MSE.

    Its validation and test steps are evaluation.py's, its optimizer optimization.py's, what
    it adds to a checkpoint checkpoint_contents.py's (mixins).

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
        # For the checkpoint only; TensorBoard gets the user's settings (training/fit.py).
        self.save_hyperparameters(logger=False)
        self.settings = s = TrainSettings.model_validate(settings)
        self.geography = Geography.from_dict(geography)
        check_levels(self.geography.levels, self.geography.n_classes, s.hierarchy)
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
