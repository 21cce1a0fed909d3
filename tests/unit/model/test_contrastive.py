"""The location-contrastive head: its encoder's scales, its softened loss, its gallery decoding,
a fit on cached features with test-time mirroring, and the checkpoint that carries its gallery."""

import math

import numpy as np
import pytest
import torch

from geoguesser.config import load_settings
from geoguesser.errors import UserError
from geoguesser.geo.coords import haversine_km, to_projected
from geoguesser.inference.predict import predict_table
from geoguesser.model.checkpoint import load_checkpoint, write_checkpoint
from geoguesser.model.contrastive import candidate_targets, decode_gallery
from geoguesser.model.features import MIRRORED
from geoguesser.model.gallery import GALLERY_KEY, Gallery
from geoguesser.model.geography import Geography
from geoguesser.model.location_encoder import LocationEncoder, fourier_frequencies
from geoguesser.training.fit import train
from helpers.configs import tiny_config
from helpers.processes import geoguesser

SIGMAS = [2.0, 8.0, 32.0, 128.0]


def test_each_scale_draws_frequencies_of_its_own_size():
    frequencies = fourier_frequencies(SIGMAS, 4096)
    assert frequencies.shape == (4, 2, 4096)
    for sigma, drawn in zip(SIGMAS, frequencies, strict=True):
        assert drawn.std().item() == pytest.approx(1 / (2 * math.pi * sigma), rel=0.05)
    assert torch.equal(frequencies, fourier_frequencies(SIGMAS, 4096))  # part of the model


def kernel(encoder, a_m, b_m, scale: int) -> float:
    """The mean cosine of scale `scale`'s phases between two points: its RFF kernel value."""
    n = encoder.frequencies.shape[2]
    fa = encoder.features(torch.tensor([a_m])).view(len(SIGMAS), 2 * n)[scale]
    fb = encoder.features(torch.tensor([b_m])).view(len(SIGMAS), 2 * n)[scale]
    return float((fa * fb).sum() / n)  # cos a cos b + sin a sin b = cos(a - b)


def test_small_scales_tell_villages_apart_and_large_ones_regions():
    encoder = LocationEncoder(SIGMAS, 512, 16)
    here = [480_000.0, 5_000_000.0]
    near, far = [here[0] + 5_000, here[1]], [here[0] + 150_000, here[1]]
    # RFF approximate exp(-d^2 / (2 sigma^2)): 5 km is far at 2 km, near at 128 km
    assert kernel(encoder, here, near, 0) < 0.15
    assert kernel(encoder, here, near, 3) > 0.95
    assert 0.3 < kernel(encoder, here, far, 3) < 0.7 and kernel(encoder, here, far, 1) < 0.15
    embeddings = encoder(torch.tensor([here, near, far]))
    assert embeddings.shape == (3, 16)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)


def test_a_neighbour_is_not_a_full_negative():
    latlon = torch.tensor([[45.0, 16.0]], dtype=torch.float64)
    candidates = torch.tensor([[45.0, 16.0], [45.01, 16.0], [43.0, 16.0]], dtype=torch.float64)
    soft = candidate_targets(latlon, candidates, 50.0)
    assert soft[0, 1] > 0.45 * soft[0, 0] and soft[0, 2] < 0.01  # 1 km, 222 km away
    assert soft.sum().item() == pytest.approx(1.0)
    hard = candidate_targets(latlon, candidates, None)
    assert torch.equal(hard, torch.tensor([[1.0, 0, 0]], dtype=torch.float64))
    drawn_twice = torch.cat([candidates, latlon])  # the gallery's copy of the same place
    assert torch.equal(
        candidate_targets(latlon, drawn_twice, None),
        torch.tensor([[0.5, 0, 0, 0.5]], dtype=torch.float64),
    )


def test_the_guess_is_the_weighted_mean_of_the_top_gallery_points(enriched):
    table, cells, scaler, border = enriched
    geography = Geography.of(cells, scaler, border)
    x, y = to_projected(np.array([45.8, 45.8, 43.5]), np.array([15.9, 16.1, 16.4]), geography.crs)
    gallery = Gallery.of_points(np.column_stack([x, y]), geography, "weighted")
    gallery.embeddings = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    query = torch.tensor([[1.0, 0.1]])
    settings = tiny_config(objective="contrastive", gallery_top_k=2)
    decoded = decode_gallery(query, gallery, 10.0, geography, settings, every=True)
    similarity = torch.tensor([1.0, 0.8 + 0.06]) / math.hypot(1.0, 0.1)
    weights = torch.softmax(10.0 * similarity, dim=0).double()
    expected_xy = (weights[:, None] * gallery.xy[:2]).sum(0)
    from geoguesser.geo.coords import to_latlon

    lat, lon = to_latlon(expected_xy[0:1].numpy(), expected_xy[1:2].numpy(), geography.crs)
    assert np.allclose(decoded["lat"], lat) and np.allclose(decoded["lon"], lon)
    errors = haversine_km(lat[0], lon[0], gallery.latlon[:2, 0].numpy(), gallery.latlon[:2, 1])
    assert decoded["expected_error_km"][0] == pytest.approx(float((weights.numpy() * errors).sum()))
    # the far point (Split) is not among the top 2: its cell gets nothing unless shared
    top_label = int(decoded["top1_label"][0])
    assert top_label == int(gallery.labels[0]) and decoded["prob"][0] <= 1 + 1e-9


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.retrieval=true", "retrieval does not apply to objective contrastive"),
        ("train.offset_weight=2", "offset_weight does not apply to objective contrastive"),
        ("train.decode=argmax", "decode argmax does not apply to objective contrastive"),
    ],
)
def test_options_of_other_heads_are_refused_in_one_line(synthetic_dir, override, expected):
    with pytest.raises(UserError) as error:
        load_settings(
            None,
            [f"data.dataset_dirs=[{synthetic_dir}]", "train.objective=contrastive", override],
        )
    assert expected in str(error.value) and "\n" not in str(error.value)


# --- a fit on cached features, mirrored at test time ----------------------------------------


@pytest.fixture(scope="module")
def contrastive_fit(enriched, tmp_path_factory):
    """A contrastive, mean-fused model on cached features, validated and tested mirrored."""
    table, cells, scaler, border = enriched
    settings = tiny_config(
        objective="contrastive", fusion="mean", tau_km=50, tta="mirror", freeze_epochs=2,
        feature_cache=True, gallery_land_points=100, contrastive_negatives=64,
    )  # fmt: skip
    store: dict = {}
    result = train(
        settings, table, cells, scaler, tmp_path_factory.mktemp("contrastive"), border,
        feature_store=store,
    )  # fmt: skip
    return result, store


def test_a_contrastive_fit_carries_its_gallery_and_predicts_the_same_from_it(
    enriched, contrastive_fit
):
    table = enriched[0]
    result, store = contrastive_fit
    for split in ("val", "test"):
        assert math.isfinite(getattr(result, split)[f"{split}/mean_km"])
    # the test split was mirrored from cached features of its own
    mirrored = {key[:2] for key in store if len(key) == 3 and key[2] == MIRRORED}
    assert len(mirrored) == int((table.split != "train").sum())
    stored = torch.load(result.best_checkpoint, weights_only=True)[GALLERY_KEY]
    assert stored["xy"].shape == (int((table.split == "train").sum()) + 100, 2)
    assert stored["embeddings"].shape == (len(stored["xy"]), 128)
    reloaded = load_checkpoint(result.best_checkpoint)
    rows = table[table.split == "test"]
    in_memory = predict_table(result.model, rows, progress=False)
    from_file = predict_table(reloaded, rows, progress=False)
    assert np.allclose(in_memory.pred_lat, from_file.pred_lat, atol=1e-9)
    assert np.allclose(in_memory.pred_lon, from_file.pred_lon, atol=1e-9)
    assert (from_file.expected_error_km > 0).all() and "top3_label" in from_file
    assert from_file.pred_lat.between(42, 47).all() and from_file.pred_lon.between(13, 20).all()


def test_a_contrastive_model_answers_from_one_to_four_views(contrastive_fit):
    model = load_checkpoint(contrastive_fit[0].best_checkpoint)
    images = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    for views in (1, 4):
        decoded = model.locate(images[:, :views])
        assert decoded["lat"].shape == (2,) and np.isfinite(decoded["expected_error_km"]).all()


def test_predict_tta_option_overrides_the_checkpoints(contrastive_fit, tmp_path):
    from helpers.datasets import write_jpeg

    photos = tmp_path / "photos"
    for i in range(2):
        write_jpeg(photos / f"p{i}.jpg", seed=i, size=40)
    answers = {}
    for tta in ("none", "mirror"):
        out = tmp_path / f"{tta}.csv"
        done = geoguesser(
            "predict", "--checkpoint", contrastive_fit[0].best_checkpoint, "--photos", photos,
            "--out", out, "--tta", tta, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answers[tta] = np.loadtxt(out, delimiter=",", skiprows=1, usecols=(1, 2))
    assert not np.allclose(answers["none"], answers["mirror"])


def test_a_contrastive_checkpoint_without_its_gallery_is_refused_in_one_line(
    contrastive_fit, tmp_path
):
    checkpoint = torch.load(contrastive_fit[0].best_checkpoint, weights_only=True)
    del checkpoint[GALLERY_KEY]
    torch.save(checkpoint, tmp_path / "bare.ckpt")
    with pytest.raises(UserError, match="without its gallery") as error:
        load_checkpoint(tmp_path / "bare.ckpt")
    assert "\n" not in str(error.value)


def test_write_checkpoint_encodes_the_gallery_with_the_weights_it_saves(contrastive_fit, tmp_path):
    model = load_checkpoint(contrastive_fit[0].best_checkpoint)
    with torch.no_grad():
        model.contrastive.encoder.out.bias += 1.0  # as a training step would change it
    model.gallery.embeddings = None
    reloaded = load_checkpoint(write_checkpoint(model, tmp_path / "changed.ckpt"))
    fresh = Gallery(reloaded.gallery.xy, reloaded.gallery.latlon, reloaded.gallery.labels)
    fresh.encode(reloaded.contrastive.encoder)
    assert torch.allclose(fresh.embeddings, reloaded.gallery.embeddings, atol=1e-6)
