import math

import numpy as np
import pytest
import torch

from geoguesser.geo.coords import EARTH_RADIUS_KM, to_latlon
from geoguesser.model.objectives import decode_classes, haversine_soft_targets


def test_haversine_soft_targets_match_hand_computed_values():
    # Centroids on the 16 E meridian, 0, 0.1 and 0.3 degrees north of the true location:
    # great-circle distances are R * dphi.
    d = [0.0, EARTH_RADIUS_KM * math.radians(0.1), EARTH_RADIUS_KM * math.radians(0.3)]
    tau = 10.0
    weights = [math.exp(-(di - d[0]) / tau) for di in d]
    expected = [w / sum(weights) for w in weights]  # about 0.733, 0.241, 0.026
    f64 = torch.float64  # exact inputs: 45.1 in float32 is 0.2 m off
    got = haversine_soft_targets(
        torch.tensor([45.0], dtype=f64),
        torch.tensor([16.0], dtype=f64),
        torch.tensor([45.0, 45.1, 45.3], dtype=f64),
        torch.tensor([16.0, 16.0, 16.0], dtype=f64),
        tau,
    )
    assert got[0].tolist() == pytest.approx(expected, rel=1e-9)
    assert expected[0] == pytest.approx(0.7329, abs=1e-4)


def test_soft_targets_favour_the_nearest_centroid_not_the_first():
    got = haversine_soft_targets(
        torch.tensor([45.3]),
        torch.tensor([16.0]),
        torch.tensor([45.0, 45.1, 45.3]),
        torch.tensor([16.0, 16.0, 16.0]),
        25.0,
    )
    assert got.argmax().item() == 2 and got.sum().item() == pytest.approx(1.0)


def test_weighted_mean_and_argmax_decoding():
    probs = torch.tensor([[0.5, 0.25, 0.25]])
    centroids = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 8.0]], dtype=torch.float64)
    assert decode_classes(probs, centroids, "mean").tolist() == [[1.0, 2.0]]
    assert decode_classes(probs, centroids, "argmax").tolist() == [[0.0, 0.0]]


def test_model_decodes_weighted_centroids_as_hand_computed(small_model):
    model, geography = small_model
    probs = np.array([0.5, 0.3, 0.2])
    logits = torch.tensor(np.log(probs), dtype=torch.float32)[None]
    decoded = model.decode(logits, every=True)
    cells = geography["cells"]
    x = sum(p * cx for p, cx in zip(probs, cells["weighted_x"], strict=True))
    y = sum(p * cy for p, cy in zip(probs, cells["weighted_y"], strict=True))
    lat, lon = to_latlon(x, y, geography["crs"])
    # float32 softmax: within 1e-6 degrees (0.1 m)
    assert (decoded["lat"][0], decoded["lon"][0]) == pytest.approx(
        (float(lat), float(lon)), abs=1e-6
    )
    assert decoded["label"][0] == 0 and decoded["prob"][0] == pytest.approx(0.5)
    assert decoded["clipped_argmax_lat"][0] == pytest.approx(cells["clipped_lat"][0])
