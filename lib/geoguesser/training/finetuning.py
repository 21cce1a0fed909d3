"""How the network's weights are trained: the freeze -> unfreeze schedule, per-epoch schedulers.

The schedule is Lightning's own `BaseFinetuning`: the backbone is frozen for the first
`freeze_epochs`, then all of it (or only its last `unfreeze_blocks` stages; the others stay
frozen for good) trains with its own learning rate, `backbone_lr` (the optimizer and the
split of the backbone are model.optimization's).

BatchNorm: frozen parts run in eval mode, so they use, and keep, their stored running
statistics, and the frozen backbone is a fixed function of the image (what makes its
features cacheable, see data.datamodule.GeoDataModule). Unfrozen parts train their
BatchNorm layers, statistics included.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import BaseFinetuning, Callback

from geoguesser.model.optimization import split_backbone


class FreezeThenUnfreeze(BaseFinetuning):
    """The backbone (`pl_module.net.backbone`) frozen for `freeze_epochs`, then trained."""

    def __init__(self, freeze_epochs: int, unfreeze_blocks: int | None):
        super().__init__()
        self.freeze_epochs, self.unfreeze_blocks = freeze_epochs, unfreeze_blocks

    def freeze_before_training(self, pl_module) -> None:
        # The stages that never train: frozen before DDP wraps the model, so it ignores them.
        self.fixed, self.trainable = split_backbone(pl_module.net.backbone, self.unfreeze_blocks)
        self.freeze(self.fixed, train_bn=False)

    def on_fit_start(self, trainer, pl_module) -> None:
        # The stages that train later: frozen once DDP has registered them, since it must
        # synchronize their gradients after the unfreeze.
        if self.freeze_epochs > 0:
            self.freeze(self.trainable, train_bn=False)
        super().on_fit_start(trainer, pl_module)

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        # Every epoch from the unfreeze on, not only at it: a fit resumed later starts frozen.
        if epoch >= self.freeze_epochs:
            self.make_trainable(self.trainable)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Per batch, because Lightning restores each module's mode after validation.
        unfrozen = trainer.current_epoch >= self.freeze_epochs
        for module in self.trainable:
            module.train(unfrozen)
        for module in self.fixed:
            module.eval()


class EpochSchedulers(Callback):
    """Steps the per-epoch schedulers at the epoch's end, before its checkpoint is written.

    Lightning steps them only after its checkpoint callback has saved the epoch, so a fit
    resumed from that checkpoint would miss one step and follow another schedule than an
    uninterrupted fit (GeoLocator.lr_scheduler_step leaves them to this callback).
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for config in trainer.lr_scheduler_configs:
            if config.interval == "epoch" and config.reduce_on_plateau:
                config.scheduler.step(trainer.callback_metrics[config.monitor])
            elif config.interval == "epoch":
                config.scheduler.step()
