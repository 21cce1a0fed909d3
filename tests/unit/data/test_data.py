import torch

from geoguesser.data.datamodule import GeoDataModule
from geoguesser.data.views import LocationDataset
from geoguesser.model.augment import augment, mirror_scene
from helpers.configs import tiny_config


def test_items_hold_four_uint8_views_in_order_and_targets(enriched):
    table = enriched[0]
    item = LocationDataset(table, 32)[0]
    assert item["images"].shape == (4, 3, 32, 32) and item["images"].dtype == torch.uint8
    assert item["label"].dtype == torch.long and item["target_xy"].shape == (2,)
    assert item["latlon"].tolist() == [table.latitude[0], table.longitude[0]]


def test_mirroring_swaps_east_and_west():
    images = torch.arange(4, dtype=torch.float32).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2).clone()
    images[..., 0] += 10  # left column marked
    mirrored = mirror_scene(images)
    assert mirrored[0, :, 0, 0, 1].tolist() == [
        10,
        13,
        12,
        11,
    ]  # N, W-as-E, S, E-as-W; marks now right
    assert mirrored[0, :, 0, 0, 0].tolist() == [0, 3, 2, 1]


def test_augmentation_keeps_range_and_shape():
    images = torch.rand(8, 4, 3, 16, 16)
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1


def test_datamodule_splits_and_train_statistics(enriched, tmp_path):
    table = enriched[0]
    settings = tiny_config(batch_size=4, normalization="train", image_cache_dir=tmp_path)
    module = GeoDataModule(table, settings)
    module.setup("fit")
    sizes = {split: len(ds) for split, ds in module.datasets.items()}
    assert sizes == table.split.value_counts().to_dict()
    assert all(0 < m < 1 for m in module.mean) and all(0 < s < 0.5 for s in module.std)
    batch = next(iter(module.train_dataloader()))
    assert batch["images"].shape == (4, 4, 3, 32, 32)
