"""Validation and test of the LightningModule: its steps, and the metrics they accumulate.

Each split has its GeoErrors (distance errors and the GeoScore, gathered across processes)
and, for the objectives with cell logits, the cell accuracy. A mixin of locator.GeoLocator, whose
`fused`, `loss`, `decode` and `logits` it uses; the metrics hold no weights, so they are no
part of a checkpoint's state_dict.
"""

from __future__ import annotations

import numpy as np
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from geoguesser.geo.metrics import GeoErrors
from geoguesser.model.geography import Geography


class EvaluationSteps:
    """validation_step, test_step and their epoch ends, for a GeoLocator."""

    def add_metrics(self, geography: Geography, objective: str) -> None:
        """Per-split GeoErrors, and the cell accuracy of the objectives with cell logits."""
        self.metrics = nn.ModuleDict(
            {split: GeoErrors(geography.diagonal_km) for split in ("val", "test")}
        )
        if objective in ("classification", "hybrid"):
            accuracy = MulticlassAccuracy(geography.n_classes, average="micro")
            self.class_acc = nn.ModuleDict({x: accuracy.clone() for x in ("val", "test")})

    def _evaluate(self, batch: dict, split: str) -> None:
        outputs, fused = self.answered(batch)
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
