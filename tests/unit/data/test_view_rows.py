"""`train.view_rows`: the backbone sees only a horizontal band of each view, in every path."""

import torch

from geoguesser.data.datamodule import GeoDataModule
from geoguesser.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from geoguesser.model.checkpoint import load_checkpoint, write_checkpoint
from geoguesser.model.features import backbone_features
from geoguesser.model.geography import Geography
from geoguesser.model.locator import GeoLocator
from geoguesser.model.network import band
from helpers.configs import tiny_config


def test_band_rows_of_a_view():
    assert band(448, (0.3, 0.8)) == (134, 358)
    assert band(32, (0.0, 1.0)) == (0, 32)
    assert band(10, (0.5, 0.51)) == (5, 6)  # thinner than a row: still one row
    assert band(10, (1.0, 1.0)) == (9, 10)


def banded_model(enriched, rows):
    table, cells, scaler, border = enriched
    settings = tiny_config(view_rows=rows)
    geography = Geography.of(cells, scaler, border)
    return GeoLocator(geography, settings, IMAGENET_MEAN, IMAGENET_STD).eval()


def test_only_the_band_reaches_the_backbone(enriched):
    torch.manual_seed(0)
    model = banded_model(enriched, (0.25, 0.75))
    images = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    outside = images.clone()
    outside[..., :8, :] = 0  # rows above the band
    outside[..., 24:, :] = 255  # rows below it
    inside = images.clone()
    inside[..., 12, :] = 255 - inside[..., 12, :]
    with torch.no_grad():
        assert torch.equal(model.net(images), model.net(outside))
        assert not torch.allclose(model.net(images), model.net(inside))
        # the whole-view default sees the rows this band leaves out
        whole = banded_model(enriched, (0.0, 1.0))
        whole.net.load_state_dict(model.net.state_dict())
        assert not torch.allclose(whole.net(images), whole.net(outside))


def test_cached_features_are_those_of_the_band(enriched):
    """The frozen phase's feature cache must crop as the forward pass does."""
    table = enriched[0]
    model = banded_model(enriched, (0.3, 0.8))
    data = GeoDataModule(table, model.settings)
    data.setup("fit")
    dataset = data.datasets["val"]
    cached = backbone_features(model.net, dataset, batch_size=8, workers=0)
    images = torch.stack([dataset[i]["images"] for i in range(len(dataset))])
    with torch.no_grad():
        direct = model.net.embed(model.net.backbone_input(images.float() / 255.0))
    assert torch.allclose(cached, direct, atol=1e-5)


def test_the_checkpoint_carries_the_band(enriched, tmp_path):
    model = banded_model(enriched, (0.3, 0.8))
    loaded = load_checkpoint(write_checkpoint(model, tmp_path / "banded.ckpt"))
    assert loaded.net.view_rows == (0.3, 0.8)
    images = torch.randint(0, 256, (1, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(loaded.net(images), model.net(images))
