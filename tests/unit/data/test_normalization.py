import sys
from types import SimpleNamespace

import pytest
import torch

from geoguesser.config import load_settings
from geoguesser.data.datamodule import GeoDataModule
from geoguesser.data.normalization import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    channel_stats,
    pretrained_normalization,
)
from geoguesser.errors import UserError
from geoguesser.model.checkpoint import load_checkpoint
from geoguesser.training.fit import train
from helpers.configs import tiny_config

HALF = [0.5, 0.5, 0.5]


def test_torchvision_and_tinycnn_weights_expect_imagenet_statistics():
    imagenet = (list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert pretrained_normalization("resnet18") == imagenet
    assert pretrained_normalization("tinycnn") == imagenet


def test_timm_backbones_use_their_pretrained_config(monkeypatch):
    # EfficientNet-Lite (tf_ ports) and CLIP weights were trained with other statistics.
    configs = {"tf_efficientnet_lite0": SimpleNamespace(mean=(0.5,) * 3, std=(0.5,) * 3)}
    fake = SimpleNamespace(models=SimpleNamespace(get_pretrained_cfg=configs.get))
    monkeypatch.setitem(sys.modules, "timm", fake)
    assert pretrained_normalization("timm/tf_efficientnet_lite0") == (HALF, HALF)


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({}, "imagenet"),  # tinycnn's weights: ImageNet's
        ({"normalization": "imagenet"}, "imagenet"),
        ({"normalization": "train"}, "train"),
        ({"normalization": "train", "mean": HALF, "std": [0.25] * 3}, "explicit"),
    ],
)
def test_the_data_module_normalizes_as_the_settings_say(enriched, settings, expected):
    module = GeoDataModule(enriched[0], tiny_config(**settings))
    module.setup("fit")
    wanted = {
        "imagenet": (list(IMAGENET_MEAN), list(IMAGENET_STD)),
        "train": channel_stats(module.datasets["train"], seed=0),
        "explicit": (HALF, [0.25] * 3),
    }[expected]
    assert (module.mean, module.std) == wanted


def test_mean_without_std_is_one_line(synthetic_dir):
    overrides = [f"data.dataset_dirs=[{synthetic_dir}]", "train.mean=[0.5,0.5,0.5]"]
    with pytest.raises(UserError) as error:
        load_settings(None, overrides)
    assert str(error.value) == "train: mean and std go together: give both, or neither"


def test_the_checkpoint_records_and_applies_explicit_statistics(enriched, tmp_path):
    table, cells, scaler, border = enriched
    config = tiny_config(max_epochs=1, freeze_epochs=0, mean=HALF, std=[0.25] * 3)
    result = train(config, table, cells, scaler, tmp_path, border)
    model = load_checkpoint(result.last_checkpoint)
    hparams = torch.load(result.last_checkpoint, weights_only=True)["hyper_parameters"]
    assert (hparams["mean"], hparams["std"]) == (HALF, [0.25] * 3)
    grey = torch.full((1, 4, 3, 2, 2), 0.75)
    assert torch.allclose(model.net.backbone_input(grey), torch.ones_like(grey))
