"""The hybrid head, view fusion for one to four views, retrieval, and predicting single photos."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from geoguesser.config import load_settings
from geoguesser.errors import UserError
from geoguesser.inference.predict import predict_table
from geoguesser.model.checkpoint import load_checkpoint
from geoguesser.model.fusion import ViewFusion, drop_views
from geoguesser.model.geography import Geography
from geoguesser.model.retrieval import RETRIEVAL_KEY, RetrievalIndex
from geoguesser.training.fit import train
from helpers.configs import tiny_config
from helpers.datasets import write_jpeg
from helpers.processes import geoguesser

# --- fusion -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mean", "attention"])
def test_mean_and_attention_take_any_number_of_views_and_ignore_missing_ones(kind):
    torch.manual_seed(0)
    fusion = ViewFusion(kind, 8)
    if kind == "attention":
        torch.nn.init.normal_(fusion.score.weight)  # an untrained scorer would average
    features = torch.randn(3, 4, 8)
    for v in range(1, 5):
        assert fusion(features[:, :v]).shape == (3, 8)
    present = torch.tensor([[True, False, True, False]] * 3)
    changed = features.clone()
    changed[:, [1, 3]] = 100.0  # what a hidden view holds must not matter
    assert torch.allclose(fusion(features, present), fusion(changed, present))
    assert torch.allclose(fusion(features, present), fusion(features[:, [0, 2]]))


def test_attention_starts_as_the_mean_and_weights_views_once_trained():
    features = torch.randn(2, 4, 6)
    attention = ViewFusion("attention", 6)
    assert torch.allclose(attention(features), features.mean(dim=1), atol=1e-6)
    torch.nn.init.normal_(attention.score.weight)
    assert not torch.allclose(attention(features), features.mean(dim=1), atol=1e-3)


def test_concat_needs_all_four_views_and_says_why_in_one_line():
    fusion = ViewFusion("concat", 5)
    assert fusion(torch.randn(2, 4, 5)).shape == (2, 20)
    with pytest.raises(UserError) as error:
        fusion(torch.randn(2, 1, 5))
    message = str(error.value)
    assert "\n" not in message and "concat" in message and "mean or attention" in message
    with pytest.raises(UserError):
        fusion(torch.randn(2, 4, 5), torch.tensor([[True, True, True, False]] * 2))


def test_view_dropout_hides_views_but_always_keeps_one():
    torch.manual_seed(0)
    present = drop_views(500, 4, 0.9)
    assert present.sum(dim=1).min() == 1
    assert 0.05 < present.float().mean() < 0.5


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["train.view_dropout=0.3"], "view_dropout needs fusion mean or attention"),
        (["train.retrieval=true", "train.objective=regression"], "retrieval needs cells"),
    ],
)
def test_incompatible_options_are_refused_in_one_line(synthetic_dir, override, expected):
    with pytest.raises(UserError) as error:
        load_settings(None, [f"data.dataset_dirs=[{synthetic_dir}]", *override])
    assert expected in str(error.value) and "\n" not in str(error.value)


# --- hybrid decoding ----------------------------------------------------------------------


def test_hybrid_decodes_as_centroid_plus_offset(enriched):
    table, cells, scaler, border = enriched
    geography = Geography.of(cells, scaler, border)
    k = geography.n_classes
    logits = torch.full((2, k), -20.0)
    logits[0, 0] = logits[1, k - 1] = 20.0  # certain of one cell each
    offsets = torch.zeros(2, k, 2)
    plain = geography.decode(torch.cat([logits, offsets.flatten(1)], 1), "hybrid", how="argmax")
    classes = geography.decode(logits, "classification", how="argmax")
    assert np.allclose(plain["lat"], classes["lat"]) and np.allclose(plain["lon"], classes["lon"])
    offsets[:, :, 0] = 0.5  # half a cell east, for every cell
    moved = geography.decode(torch.cat([logits, offsets.flatten(1)], 1), "hybrid", how="mean")
    centroids = geography.centroids("weighted")
    x_east = centroids[[0, k - 1], 0] + 0.5 * geography.cell_side_m
    from geoguesser.geo.coords import to_latlon

    lat, lon = to_latlon(x_east.numpy(), centroids[[0, k - 1], 1].numpy(), geography.crs)
    assert np.allclose(moved["lat"], lat, atol=1e-6) and np.allclose(moved["lon"], lon, atol=1e-6)


# --- fits, checkpoints and predict ---------------------------------------------------------


@pytest.fixture(scope="module")
def hybrid_fit(enriched, tmp_path_factory):
    """A hybrid, attention-fused model trained with view dropout, with a retrieval index."""
    table, cells, scaler, border = enriched
    settings = tiny_config(
        objective="hybrid", fusion="attention", view_dropout=0.5, retrieval=True, tau_km=100
    )
    return train(settings, table, cells, scaler, tmp_path_factory.mktemp("hybrid"), border)


def test_hybrid_fit_with_retrieval_round_trips_through_its_checkpoint(enriched, hybrid_fit):
    table = enriched[0]
    for split in ("val", "test"):
        assert math.isfinite(getattr(hybrid_fit, split)[f"{split}/mean_km"])
        assert 0 <= getattr(hybrid_fit, split)[f"{split}/acc_class"] <= 1
    stored = torch.load(hybrid_fit.best_checkpoint, weights_only=True)
    n_train = int((table.split == "train").sum())
    assert stored[RETRIEVAL_KEY]["embeddings"].shape[0] == n_train
    reloaded = load_checkpoint(hybrid_fit.best_checkpoint)
    assert isinstance(reloaded.retrieval, RetrievalIndex)
    rows = table[table.split == "test"]
    in_memory = predict_table(hybrid_fit.model, rows, progress=False)
    from_file = predict_table(reloaded, rows, progress=False)
    assert np.allclose(in_memory.pred_lat, from_file.pred_lat, atol=1e-9)
    assert np.allclose(in_memory.pred_lon, from_file.pred_lon, atol=1e-9)
    # retrieval answers a mean of training locations, not the head's own guess
    assert not np.allclose(from_file.pred_lat, from_file.pred_head_lat)


def test_retrieval_refines_among_the_top_cells_only():
    index = RetrievalIndex.build(
        torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]),
        np.array([[0.0, 0.0], [10.0, 0.0], [500.0, 500.0]]),
        np.array([0, 0, 1]),
    )
    query = torch.tensor([[0.0, 1.0]])  # most like location 2 (cell 1), then location 1
    assert np.allclose(index.refine(query, torch.tensor([[0.9, 0.1]]), 1, 1), [[10.0, 0.0]])
    assert np.allclose(index.refine(query, torch.tensor([[0.1, 0.9]]), 1, 1), [[500.0, 500.0]])
    assert np.allclose(index.refine(query, torch.tensor([[0.9, 0.1]]), 1, 5), [[5.0, 0.0]])


def test_view_dropout_trains_on_cached_features(enriched, tmp_path):
    table, cells, scaler, border = enriched
    settings = tiny_config(
        fusion="mean", view_dropout=0.5, freeze_epochs=2, max_epochs=2, feature_cache=True
    )
    store: dict = {}
    result = train(settings, table, cells, scaler, tmp_path, border, feature_store=store)
    assert len(store) == len(table)  # test included: the backbone never changed
    assert math.isfinite(result.test["test/mean_km"])


def test_predict_photos_places_each_image_file_from_its_one_view(hybrid_fit, tmp_path):
    photos = tmp_path / "photos"
    for i, name in enumerate(["north.jpg", "beach.png", "b.jpeg"]):
        write_jpeg(photos / name, seed=i, size=40)
    (photos / "notes.txt").write_text("not a photo")
    out = tmp_path / "out.csv"
    done = geoguesser(
        "predict", "--checkpoint", hybrid_fit.best_checkpoint, "--photos", photos,
        "--out", out, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["uuid", "latitude", "longitude"]
    assert sorted(frame.uuid) == ["b", "beach", "north"]
    assert frame.latitude.between(42, 47).all() and frame.longitude.between(13, 20).all()


def test_a_concat_model_refuses_single_photos_in_one_line(enriched, tmp_path):
    table, cells, scaler, border = enriched
    settings = tiny_config(fusion="concat", max_epochs=1, freeze_epochs=0)
    result = train(settings, table, cells, scaler, tmp_path / "run", border)
    write_jpeg(tmp_path / "photos" / "a.jpg", seed=0)
    done = geoguesser(
        "predict", "--checkpoint", result.best_checkpoint, "--photos", tmp_path / "photos",
        "--out", tmp_path / "out.csv", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "concat" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "out.csv").exists()
