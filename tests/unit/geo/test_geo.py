import numpy as np
import pytest
import torch
from pyproj import Geod

from geoguesser.geo.coords import (
    MinMaxScaler,
    haversine_km,
    haversine_km_torch,
    to_latlon,
    to_projected,
)


def croatian_points(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform(42.4, 46.6, n), rng.uniform(13.5, 19.5, n)


def test_projection_round_trip_loses_less_than_a_metre():
    lat, lon = croatian_points(10_000)
    x, y = to_projected(lat, lon)
    lat2, lon2 = to_latlon(x, y)
    assert haversine_km(lat, lon, lat2, lon2).max() * 1000 < 1.0


def test_default_projection_is_croatia_lcc_and_tm_is_available():
    # EPSG:3766 (HTRS96 / Croatia LCC) has its central meridian at 16.5 E and no false easting;
    # EPSG:3765 (HTRS96 / Croatia TM) puts the same meridian at 500 km east.
    x, _ = to_projected([45.0], [16.5])
    assert x[0] == pytest.approx(0.0, abs=1e-3)
    x_tm, y_tm = to_projected([45.0], [16.5], crs="EPSG:3765")
    assert x_tm[0] == pytest.approx(500_000, abs=1e-3) and 4_980_000 < y_tm[0] < 4_990_000
    lat, lon = to_latlon(x_tm, y_tm, crs="EPSG:3765")
    assert (lat[0], lon[0]) == pytest.approx((45.0, 16.5))


def test_projected_distances_match_great_circle_within_croatia():
    lat, lon = croatian_points(2_000, seed=1)
    x, y = to_projected(lat, lon)
    planar = np.hypot(np.diff(x), np.diff(y)) / 1000
    sphere = haversine_km(lat[:-1], lon[:-1], lat[1:], lon[1:])
    assert np.allclose(planar, sphere, rtol=0.01)


def test_haversine_agrees_with_the_geodesic_within_half_a_percent():
    lat1, lon1 = croatian_points(5_000, seed=2)
    lat2, lon2 = croatian_points(5_000, seed=3)
    _, _, geodesic_m = Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)
    ratio = haversine_km(lat1, lon1, lat2, lon2) / (geodesic_m / 1000)
    assert np.abs(ratio - 1).max() < 0.005


def test_haversine_known_distance_and_zero():
    # Zagreb to Split, about 259 km as the crow flies.
    assert haversine_km(45.8150, 15.9819, 43.5081, 16.4402) == pytest.approx(259.4, abs=1.0)
    assert haversine_km(45.0, 16.0, 45.0, 16.0) == 0.0


def test_haversine_torch_float32_is_metre_precise():
    lat1, lon1 = croatian_points(2_000, seed=4)
    rng = np.random.default_rng(5)
    # Pairs from a few metres to hundreds of km apart.
    scale = 10 ** rng.uniform(-4.5, 0.5, lat1.size)
    lat2, lon2 = (
        lat1 + scale * rng.normal(size=lat1.size),
        lon1 + scale * rng.normal(size=lat1.size),
    )
    tensors = [torch.tensor(a, dtype=torch.float32) for a in (lat1, lon1, lat2, lon2)]
    got = haversine_km_torch(*tensors)
    assert got.dtype == torch.float32
    exact = haversine_km(*(t.double().numpy() for t in tensors))  # same float32-rounded inputs
    assert np.abs(got.numpy() - exact).max() * 1000 < 1.0


def test_haversine_torch_keeps_gradients_and_float64():
    lat = torch.tensor([45.0, 44.0], dtype=torch.float64, requires_grad=True)
    d = haversine_km_torch(
        lat, torch.tensor([16.0, 16.0]), torch.tensor([45.5, 43.0]), torch.tensor([16.0, 17.0])
    )
    assert d.dtype == torch.float64
    d.sum().backward()
    assert torch.isfinite(lat.grad).all()


def test_scaler_fits_train_only_and_round_trips_through_json():
    x_train, y_train = np.array([0.0, 100.0, 50.0]), np.array([10.0, 30.0, 20.0])
    scaler = MinMaxScaler.fit(x_train, y_train)
    u, v = scaler.transform(np.array([0.0, 100.0, 200.0]), np.array([10.0, 30.0, 50.0]))
    assert np.allclose(u, [0, 1, 2]) and np.allclose(v, [0, 1, 2])  # val/test may leave [0, 1]
    again = MinMaxScaler.from_json(scaler.to_json())
    assert again == scaler
    x, y = again.inverse(torch.tensor([0.5]), torch.tensor([0.25]))
    assert x.item() == pytest.approx(50.0) and y.item() == pytest.approx(15.0)


def test_scaler_refuses_empty_and_survives_a_single_point():
    with pytest.raises(ValueError):
        MinMaxScaler.fit([], [])
    scaler = MinMaxScaler.fit([5.0], [7.0])
    u, v = scaler.transform([5.0], [7.0])
    assert np.isfinite(u).all() and np.isfinite(v).all()
    assert np.allclose(scaler.inverse(u, v), ([5.0], [7.0]))
