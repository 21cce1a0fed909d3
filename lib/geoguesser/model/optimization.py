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


def locator_optimization(module) -> dict:
    """`configure_optimizers` of a GeoLocator: its head's parameters (all but the backbone's),
    and the backbone stages that train once unfrozen, with their own learning rate."""
    head = [p for name, p in module.named_parameters() if not name.startswith("net.backbone.")]
    _, trainable = split_backbone(module.net.backbone, module.settings.unfreeze_blocks)
    backbone = [p for part in trainable for p in part.parameters()]
    # Only OneCycle needs the step count (counting makes a train loader, early).
    onecycle = module.settings.scheduler == "onecycle"
    total = module.trainer.estimated_stepping_batches if onecycle else 0
    return optimization(module.settings, head, backbone, total)
