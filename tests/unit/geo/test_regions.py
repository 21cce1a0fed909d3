"""The shipped counties, the region of a point, region accuracy, and metrics.json's figure."""

import numpy as np
import pandas as pd
import pytest

from geoguesser.analysis.plots import cells_beside_squares
from geoguesser.analysis.report import run_metrics
from geoguesser.config import GridSettings
from geoguesser.geo.borders import load_border
from geoguesser.geo.grid import build_cells, make_cells
from geoguesser.geo.metrics import region_accuracy
from geoguesser.geo.regions import load_regions, region_of
from geoguesser.geo.sampling import sample_uniform

SEATS = {  # county seats: (lat, lon) -> their county
    "Split": (43.508, 16.440, "Splitsko-dalmatinska"),
    "Osijek": (45.551, 18.694, "Osječko-baranjska"),
    "Zagreb": (45.815, 15.982, "Grad Zagreb"),
    "Gospić": (44.546, 15.375, "Ličko-senjska"),
    "Čakovec": (46.384, 16.434, "Međimurska"),
    "Pula": (44.866, 13.850, "Istarska"),
}


def test_the_shipped_counties_are_croatias_21_and_hold_their_seats():
    counties = load_regions("counties")
    assert len(counties) == 21 and counties.region.is_unique
    lat, lon, names = zip(*SEATS.values(), strict=True)
    assert counties.region[region_of(counties, lat, lon)].tolist() == list(names)
    # A point at sea off Split counts for the nearest county.
    assert counties.region[region_of(counties, [43.30], [16.30])].tolist() == [
        "Splitsko-dalmatinska"
    ]


def test_region_accuracy_counts_predictions_in_the_truths_region():
    counties = load_regions("counties")
    split, osijek, zagreb = SEATS["Split"], SEATS["Osijek"], SEATS["Zagreb"]
    true = np.array([split[:2], osijek[:2], zagreb[:2], zagreb[:2]])
    pred = np.array([[43.52, 16.47], osijek[:2], split[:2], [45.80, 15.95]])
    share = region_accuracy(counties, true[:, 0], true[:, 1], pred[:, 0], pred[:, 1])
    assert share == pytest.approx(0.75)
    assert np.isnan(region_accuracy(counties, [], [], [], []))


@pytest.fixture(scope="module")
def region_run():
    border = load_border()
    points = sample_uniform(border, 400, seed=5)
    grid = GridSettings(kind="regions", min_region_train=1, max_train=1000)
    cells = build_cells(border, points.latitude, points.longitude, grid, "EPSG:3766")
    return border, points, cells


def test_metrics_json_reports_region_accuracy_only_for_region_cells(region_run):
    border, points, cells = region_run
    truth = points.iloc[:50]
    predictions = pd.DataFrame({
        "split": "test", "true_lat": truth.latitude, "true_lon": truth.longitude,
        "pred_lat": truth.latitude[::-1].to_numpy(), "pred_lon": truth.longitude[::-1].to_numpy(),
    })  # fmt: skip
    table = points.assign(split="train")
    metrics = run_metrics(predictions, table, cells, 600.0, "EPSG:3766")["test"]
    expected = region_accuracy(
        load_regions("counties"), truth.latitude, truth.longitude,
        predictions.pred_lat, predictions.pred_lon,
    )  # fmt: skip
    assert metrics["region_accuracy"] == pytest.approx(expected) and 0 <= expected < 1
    squares = make_cells(border, points.latitude, points.longitude, cell_km=100)
    assert (
        "region_accuracy"
        not in run_metrics(predictions, table, squares, 600.0, "EPSG:3766")["test"]
    )


def test_step_02_draws_the_chosen_cells_beside_squares(region_run):
    border, points, cells = region_run
    squares = make_cells(border, points.latitude, points.longitude, cell_km=50)
    figure = cells_beside_squares(cells, squares, border)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles[0].startswith("regions: 21 classes") and titles[1].startswith("square 50 km")
    assert len(cells_beside_squares(squares, squares, border).axes) == 2  # one map, its bar
