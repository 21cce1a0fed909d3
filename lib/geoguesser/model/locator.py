"""The LightningModule (GeoLocator): the network, its loss, evaluation and checkpoint put together.

The network is network.MultiViewNet, kept as `net` (the checkpoints' `net.*` keys); the
losses are loss.py's, the files checkpoint.py's, the fine-tuning schedule training's.
Retrieval (retrieval.py) may refine a guess among the top cells; the contrastive objective
(contrastive.py) ranks a gallery of places (gallery.py) instead of cells; test-time
augmentation (tta.py) averages each location's answer with its mirror's. The normalization
and the geography travel in the hyper-parameters: a checkpoint alone turns photographs into
places.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from geoguesser.config import TOP_CELLS, TrainSettings
from geoguesser.errors import UserError
from geoguesser.model.augment import augment
from geoguesser.model.checkpoint_contents import CheckpointContents
from geoguesser.model.contrastive import ContrastiveHead, contrastive_loss, decode_gallery
from geoguesser.model.evaluation import EvaluationSteps
from geoguesser.model.fusion import concat_refusal, drop_views
from geoguesser.model.gallery import Gallery
from geoguesser.model.geography import Geography
from geoguesser.model.hierarchy_loss import check_levels
from geoguesser.model.loss import objective_loss
from geoguesser.model.network import MultiViewNet
from geoguesser.model.objectives import n_outputs, split_hybrid
from geoguesser.model.optimization import OptimizerSteps
from geoguesser.model.retrieval import RetrievalIndex, refined
from geoguesser.model.tta import averaged_fused, averaged_outputs, mirrored_batch


class GeoLocator(EvaluationSteps, OptimizerSteps, CheckpointContents, pl.LightningModule):
    """Network, loss, metrics and decoding: cells by cross-entropy, normalized x/y by MSE, or
    image against location embeddings (contrastive, with its `contrastive` encoder and `gallery`).

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
        outputs = n_outputs(s.objective, self.geography.n_classes, s.embedding_dim)
        self.net = MultiViewNet.build(s, outputs, mean, std)
        self._embed = torch.compile(self.net.embed) if s.compile else self.net.embed
        centroids = self.geography.centroids(s.centroid_kind, "latlon")
        self.register_buffer("centroids_latlon", centroids, persistent=False)
        self.add_metrics(self.geography, s.objective)
        self.retrieval: RetrievalIndex | None = None  # set by retrieval.attach, or a checkpoint
        contrastive = s.objective == "contrastive"
        self.contrastive = ContrastiveHead(s) if contrastive else None
        self.gallery: Gallery | None = None  # set by gallery.prepare, or a checkpoint

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

    def answered(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation's head outputs and fused embeddings, averaged with the mirrored
        scene's under `tta: mirror` (see tta.py)."""
        fused = self.fused(batch)
        outputs = self.net.head(fused)
        if self.settings.tta == "mirror":
            mirrored = self.fused(mirrored_batch(batch))
            n = self.geography.n_classes
            outputs = averaged_outputs(outputs, self.net.head(mirrored), self.settings.objective, n)
            fused = averaged_fused(fused, mirrored)
        return outputs, fused

    def current_gallery(self) -> Gallery:
        """The gallery with embeddings of the encoder as it is now (encoded if stale)."""
        if self.gallery is None:
            raise UserError("this contrastive model has no gallery (gallery.prepare gives one)")
        if self.gallery.embeddings is None:
            self.gallery.encode(self.contrastive.encoder)
        return self.gallery

    def logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """The cell logits of a classification or hybrid output."""
        if self.settings.objective == "hybrid":
            return split_hybrid(outputs, self.geography.n_classes)[0]
        return outputs

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.contrastive is not None:
            x, y = self.geography.scaler.inverse(*batch["target_xy"].double().unbind(1))
            true_xy = torch.stack([x, y], dim=1)
            return contrastive_loss(
                outputs, true_xy, batch, self.contrastive, self.gallery, self.settings
            )
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
        if self.contrastive is not None:
            scale = float(self.contrastive.scale())
            gallery = self.current_gallery()
            return decode_gallery(outputs, gallery, scale, self.geography, s, every, top_k)
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
        outputs, fused = self.answered({"images": images.to(self.device)})
        return self.decode(outputs, every=True, fused=fused, top_k=top_k)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch), batch)
        if self.gallery is not None:
            self.gallery.embeddings = None  # the encoder is changing: encode it again when needed
        n = len(batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        return loss
