import torch
from pytorch_lightning.callbacks import Callback

from geoguesser.model.backbones import backbone_blocks
from geoguesser.training.fit import train
from helpers.configs import tiny_config


class ModeRecorder(Callback):
    """Per epoch, as the training batches see it: (train mode, trainable) of each stage."""

    def __init__(self):
        self.seen = {}

    def on_fit_start(self, trainer, pl_module):
        self.initial = {k: v.clone() for k, v in pl_module.net.backbone.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        blocks = backbone_blocks(pl_module.net.backbone)
        self.seen[trainer.current_epoch] = [
            (b.training, all(p.requires_grad for p in b.parameters())) for b in blocks
        ]


def test_frozen_then_last_blocks_unfrozen_with_their_batchnorm(enriched, tmp_path):
    table, cells, scaler, border = enriched
    config = tiny_config(max_epochs=3, freeze_epochs=1, unfreeze_blocks=3, augment=False)
    recorder = ModeRecorder()
    result = train(config, table, cells, scaler, tmp_path, border, callbacks=[recorder])
    n = len(backbone_blocks(result.model.net.backbone))  # tinycnn: 8 stages with parameters
    assert recorder.seen[0] == [(False, False)] * n  # all frozen: eval mode, no gradients
    for epoch in (1, 2):  # the last three train (BatchNorm in train mode), the rest never
        assert recorder.seen[epoch] == [(False, False)] * (n - 3) + [(True, True)] * 3
    old, new = recorder.initial, result.model.net.backbone.state_dict()
    changed = {name.split(".")[1] for name in old if not torch.equal(old[name], new[name])}
    # tinycnn's features: (conv, BatchNorm, ReLU) x 4; the stages with parameters are 0, 1,
    # 3, 4, 6, 7, 9, 10. Only the last three changed; the frozen BatchNorm statistics did not.
    assert changed == {"7", "9", "10"}
