"""The optimizer and its learning-rate scheduler, over the head's and the backbone's parameters.

The optimizer holds the backbone's parameter group from the start (with no gradients while
frozen, Adam and AdamW leave it untouched) instead of adding it at the unfreeze epoch as
`unfreeze_and_add_param_group` would: the schedulers (OneCycleLR, cosine, plateau) are built
with the optimizer and would not know a group added later. The freeze -> unfreeze schedule
itself is training.finetuning's callback; which backbone stages ever train is decided here,
by `split_backbone`, for both.
"""

from __future__ import annotations

import torch
from torch import nn

from geoguesser.config import TrainSettings
from geoguesser.model.backbones import backbone_blocks


def split_backbone(backbone: nn.Module, unfreeze_blocks: int | None) -> tuple[list, list]:
    """(stages that never train, stages that train once unfrozen)."""
    if unfreeze_blocks is None:
        return [], [backbone]
    blocks = backbone_blocks(backbone)
    cut = max(0, len(blocks) - unfreeze_blocks)
    return blocks[:cut], blocks[cut:]


def optimization(settings: TrainSettings, head: list, backbone: list, total_steps: int) -> dict:
    """Optimizer and learning-rate scheduler as Lightning's `configure_optimizers` returns them.

    `head` and `backbone` are parameter lists; the backbone's group has its own learning rate.
    """
    s = settings
    groups = [{"params": head, "lr": s.lr}] + (
        [{"params": backbone, "lr": s.backbone_lr}] if backbone else []
    )
    optimizer_class = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(groups, weight_decay=s.weight_decay)
    schedulers = torch.optim.lr_scheduler
    if s.scheduler == "none":
        return {"optimizer": optimizer}
    if s.scheduler == "plateau":
        scheduler = schedulers.ReduceLROnPlateau(
            optimizer, mode="min", factor=s.plateau_factor, patience=s.plateau_patience
        )
        config = {"scheduler": scheduler, "monitor": "val/loss"}
    elif s.scheduler == "onecycle":
        max_lr = [group["lr"] for group in groups]
        scheduler = schedulers.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps)
        config = {"scheduler": scheduler, "interval": "step"}
    else:
        config = {"scheduler": schedulers.CosineAnnealingLR(optimizer, T_max=s.max_epochs)}
    return {"optimizer": optimizer, "lr_scheduler": config}


class OptimizerSteps:
    """configure_optimizers and lr_scheduler_step of a GeoLocator (its `net` and `settings`)."""

    def configure_optimizers(self):
        """The head's parameters (all but the backbone's), and the backbone stages that train
        once unfrozen, with their own learning rate."""
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
