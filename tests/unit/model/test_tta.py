"""Test-time mirroring: the answer averages the scene's and its mirror's, in each head's space."""

import numpy as np
import pytest
import torch

from geoguesser.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from geoguesser.data.views import LocationDataset
from geoguesser.model.augment import mirror_scene
from geoguesser.model.checkpoint import load_checkpoint, write_checkpoint
from geoguesser.model.features import backbone_features
from geoguesser.model.gallery import give_gallery
from geoguesser.model.geography import Geography
from geoguesser.model.locator import GeoLocator
from geoguesser.model.objectives import split_hybrid
from helpers.configs import tiny_config

OBJECTIVES = ["classification", "hybrid", "regression", "contrastive"]


def model_of(enriched, objective: str, tta: str = "mirror") -> GeoLocator:
    table, cells, scaler, border = enriched
    torch.manual_seed(0)
    settings = tiny_config(objective=objective, fusion="mean", tta=tta, gallery_land_points=50)
    model = GeoLocator(Geography.of(cells, scaler, border), settings, IMAGENET_MEAN, IMAGENET_STD)
    if objective == "contrastive":
        train = table[table.split == "train"]
        x, y = scaler.inverse(train.x_norm.to_numpy(), train.y_norm.to_numpy())
        give_gallery(model, np.column_stack([x, y]))
    return model.eval()


def scenes(n: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 4, 3, 32, 32), dtype=torch.uint8, generator=generator)


def passes(model, images):
    with torch.no_grad():
        plain = model.net.head(model.fused({"images": images}))
        mirrored = model.net.head(model.fused({"images": mirror_scene(images)}))
        return model.answered({"images": images})[0], plain, mirrored


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_the_answer_is_the_average_of_the_two_passes(enriched, objective):
    model = model_of(enriched, objective)
    combined, plain, mirrored = passes(model, scenes())
    if objective == "regression":
        assert torch.allclose(combined, (plain + mirrored) / 2)
    elif objective == "contrastive":
        unit = torch.nn.functional.normalize
        assert torch.allclose(combined, unit(unit(plain, dim=1) + unit(mirrored, dim=1), dim=1))
    else:
        k = model.geography.n_classes
        (c, c_off), (p, p_off), (m, m_off) = (
            split_hybrid(t, k) if objective == "hybrid" else (t, None)
            for t in (combined, plain, mirrored)
        )
        average = (p.softmax(1) + m.softmax(1)) / 2
        assert torch.allclose(c.softmax(1), average, atol=1e-6)
        if objective == "hybrid":
            assert torch.allclose(c_off, (p_off + m_off) / 2, atol=1e-6)
    assert not torch.allclose(plain, mirrored)  # the mirror is another view of the scene


def self_mirrored(images: torch.Tensor) -> torch.Tensor:
    """A scene that is its own mirror: N and S symmetric left-right, W the mirror of E."""
    images = images.clone()
    for view in (0, 2):
        half = images[:, view, ..., :16]
        images[:, view] = torch.cat([half, half.flip(-1)], dim=-1)
    images[:, 3] = images[:, 1].flip(-1)
    return images


@pytest.mark.parametrize("objective", ["classification", "contrastive"])
def test_a_scene_that_is_its_own_mirror_gets_the_same_answer_with_tta(enriched, objective):
    images = self_mirrored(scenes())
    assert torch.equal(mirror_scene(images), images)
    with_tta = model_of(enriched, objective).locate(images)
    without = model_of(enriched, objective, tta="none").locate(images)
    assert np.allclose(with_tta["lat"], without["lat"]) and np.allclose(
        with_tta["lon"], without["lon"]
    )
    assert np.allclose(with_tta["expected_error_km"], without["expected_error_km"])


def test_cached_mirrored_features_answer_as_the_mirrored_images(enriched):
    table = enriched[0]
    model = model_of(enriched, "hybrid")
    dataset = LocationDataset(table.head(3).reset_index(drop=True), 32)
    store: dict = {}
    features = backbone_features(model.net, dataset, 3, 0, store)
    mirrored = backbone_features(model.net, dataset, 3, 0, store, mirrored=True)
    assert len(store) == 6 and not torch.allclose(features, mirrored)
    images = torch.stack([dataset[i]["images"] for i in range(3)])
    from_features = model.answered({"features": features, "mirrored_features": mirrored})[0]
    from_images = model.answered({"images": images})[0]
    assert torch.allclose(from_features, from_images, atol=1e-5)


@pytest.mark.parametrize("objective", ["classification", "contrastive"])
def test_a_tta_checkpoint_answers_as_the_model_in_memory(enriched, objective, tmp_path):
    model = model_of(enriched, objective)
    images = scenes(seed=1)
    reloaded = load_checkpoint(write_checkpoint(model, tmp_path / "tta.ckpt"))
    assert reloaded.settings.tta == "mirror"
    here, there = model.locate(images), reloaded.locate(images)
    for key in ("lat", "lon", "expected_error_km", "top1_label"):
        assert np.allclose(here[key], there[key], atol=1e-9), key
