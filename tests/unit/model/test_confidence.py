"""A classifier's confidence: expected error and top cells from its own distribution."""

import numpy as np
import pandas as pd
import pytest
import torch

from geoguesser.analysis import maps
from geoguesser.analysis.report import calibration
from geoguesser.geo.coords import haversine_km
from geoguesser.model.confidence import expected_error_km, top_cells

CENTROIDS = np.array([[45.8150, 15.9819], [43.5200, 16.4700], [45.5550, 18.6955]])


def test_expected_error_weighs_the_distance_to_each_centroid_by_its_probability():
    guess_lat, guess_lon = np.array([45.8150, 45.0]), np.array([15.9819, 16.0])
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]])
    got = expected_error_km(probs, guess_lat, guess_lon, CENTROIDS)
    assert got[0] == pytest.approx(0.0, abs=1e-9)  # certain, and guessing that very centroid
    distances = haversine_km(45.0, 16.0, CENTROIDS[:, 0], CENTROIDS[:, 1])
    assert got[1] == pytest.approx(float(probs[1] @ distances))
    assert 0 < got[1] < distances.max()


def test_top_cells_are_the_likeliest_first_and_cut_to_the_number_of_cells():
    labels, probs = top_cells(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]), 5)
    assert labels.tolist() == [[1, 2, 0], [0, 2, 1]]
    assert probs.tolist() == [[0.6, 0.3, 0.1], [0.5, 0.3, 0.2]]


def test_decode_every_carries_confidence_for_a_classifier_and_nan_for_a_regression(small_model):
    model, geography = small_model
    outputs = torch.tensor([[4.0, 0.0, -1.0], [0.0, 0.1, 0.2]])
    decoded = model.geography.decode(outputs, "classification", every=True, top_k=2)
    assert {"expected_error_km", "top1_label", "top1_prob", "top2_label", "top2_prob"} <= set(
        decoded
    ) and "top3_label" not in decoded
    assert decoded["top1_label"].tolist() == [0, 2]
    assert (decoded["top1_prob"] >= decoded["top2_prob"]).all()
    assert decoded["top1_prob"].tolist() == pytest.approx(decoded["prob"].tolist())
    # the sure first row expects a smaller error than the hesitant second one
    assert 0 <= decoded["expected_error_km"][0] < decoded["expected_error_km"][1]
    plain = model.geography.decode(outputs, "classification")
    assert "expected_error_km" not in plain and "top1_label" not in plain  # validation: none
    regression = model.geography.decode(torch.zeros(2, 2), "regression", every=True)
    assert np.isnan(regression["expected_error_km"]).all() and "top1_label" not in regression


def test_calibration_numbers_rank_expected_against_actual_errors():
    frame = pd.DataFrame({"expected_error_km": [10.0, 20, 30, 40], "error_km": [5.0, 25, 26, 90]})
    numbers = calibration(frame)
    assert numbers["calibration_spearman"] == pytest.approx(1.0)
    assert numbers["expected_mean_km"] == pytest.approx(25.0)
    reversed_ = frame.assign(error_km=frame.error_km[::-1].to_numpy())
    assert calibration(reversed_)["calibration_spearman"] == pytest.approx(-1.0)
    assert calibration(frame.assign(expected_error_km=np.nan)) == {}  # a regression
    assert calibration(frame.drop(columns="expected_error_km")) == {}


def test_the_popup_lists_the_top_cells_with_probabilities_and_the_expected_error():
    frame = pd.DataFrame(
        {
            "top1_label": [4, 1],
            "top1_prob": [0.61, 0.4],
            "top2_label": [7, 2],
            "top2_prob": [0.2, 0.35],
            "expected_error_km": [12.345, np.nan],
            "true_label": [4, 3],
        }
    )
    texts = maps._cell_texts(frame)
    assert texts[0] == "likeliest cells 4 (p 0.61), 7 (p 0.20); expected error 12.3 km; true cell 4"
    assert texts[1] == "likeliest cells 1 (p 0.40), 2 (p 0.35); true cell 3"


def test_calibration_figure_draws_bins_and_the_identity(tmp_path):
    from geoguesser import style
    from geoguesser.analysis import plots

    rng = np.random.default_rng(0)
    expected = rng.uniform(5, 100, 200)
    fig = plots.calibration_figure(expected, expected * rng.uniform(0.5, 1.5, 200), spearman=0.8)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert any("10 equal-count bins" in label for label in labels)
    assert any("identity" in label for label in labels)
    assert "Spearman 0.80" in fig.axes[0].get_title()
    style.save(fig, tmp_path / "calibration.png")
    assert (tmp_path / "calibration.png").stat().st_size > 0
