import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from geoguesser.analysis.report import run_metrics
from geoguesser.geo.coords import haversine_km
from geoguesser.geo.metrics import THRESHOLDS_KM, GeoErrors, summarize
from geoguesser.inference.predict import predict_table
from geoguesser.model.checkpoint import load_checkpoint
from geoguesser.training.fit import train
from helpers.configs import tiny_config

DIAGONAL_KM = 650.0


def random_predictions(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = np.column_stack([rng.uniform(42.4, 46.5, n), rng.uniform(13.5, 19.4, n)])
    pred = true + rng.normal(0, 0.4, (n, 2))
    return pred, true


def test_geo_errors_are_the_plain_formulas_in_float64():
    pred, true = random_predictions(1000)  # even: the median is the mean of the middle two
    errors = haversine_km(true[:, 0], true[:, 1], pred[:, 0], pred[:, 1])
    metric = GeoErrors(DIAGONAL_KM)
    for part in range(4):  # several updates, as batches arrive
        rows = slice(250 * part, 250 * (part + 1))
        metric.update(torch.from_numpy(pred[rows]), torch.from_numpy(true[rows]))
    got = {key: float(value) for key, value in metric.compute().items()}
    assert got["mean_km"] == pytest.approx(errors.mean(), rel=1e-12)
    assert got["median_km"] == pytest.approx(np.median(errors), rel=1e-12)
    for t in THRESHOLDS_KM:
        assert got[f"acc_{t}km"] == pytest.approx((errors <= t).mean(), abs=1e-7)
    geoscore = np.mean(5000 * np.exp(-10 * errors / DIAGONAL_KM))
    assert got["geoscore"] == pytest.approx(geoscore, rel=1e-12)
    assert summarize(pred, true, DIAGONAL_KM) == {"n": 1000, **got}


def test_no_predictions_give_nan_not_an_error():
    assert np.isnan(summarize(np.zeros((0, 2)), np.zeros((0, 2)), DIAGONAL_KM)["median_km"])


@pytest.fixture(scope="module")
def finished_fit(enriched, tmp_path_factory):
    table, cells, scaler, border = enriched
    run = tmp_path_factory.mktemp("run")
    result = train(tiny_config(max_epochs=2, freeze_epochs=1), table, cells, scaler, run, border)
    return result, run


def tensorboard_scalars(run) -> dict[str, list[float]]:
    events = EventAccumulator(str(run / "tb")).Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_metrics_json_training_summary_and_tensorboard_agree(finished_fit, enriched):
    """Step 05's metrics (from predictions.csv), the fit's test numbers (training.json) and
    TensorBoard's test/* scalars are one computation: equal within float32 precision.

    A network's float32 outputs depend in their last digits on the batch around them (7e-7
    relative on one machine), hence 1e-5; another computation (other rows, another decoding)
    would differ by far more."""
    result, run = finished_fit
    table, cells, scaler, border = enriched
    model = load_checkpoint(result.best_checkpoint)
    held_out = table[table.split.isin(["val", "test"])]
    predictions = predict_table(model, held_out, batch_size=16, progress=False)
    predictions = pd.read_csv(_roundtrip(predictions, run), dtype={"uuid": str})
    metrics = run_metrics(predictions, table, cells, model.geography.diagonal_km, scaler.crs)
    logged = tensorboard_scalars(run)
    keys = ["mean_km", "median_km", "geoscore", *(f"acc_{t}km" for t in THRESHOLDS_KM)]
    for key in keys:
        summary, board = result.test[f"test/{key}"], logged[f"test/{key}"][-1]
        assert metrics["test"][key] == pytest.approx(summary, rel=1e-5, abs=1e-6), key
        assert metrics["test"][key] == pytest.approx(board, rel=1e-5, abs=1e-6), key


def _roundtrip(predictions: pd.DataFrame, run):
    """predictions.csv as step 04 writes it and step 05 reads it."""
    path = run / "predictions.csv"
    predictions.to_csv(path, index=False)
    return path


def test_hparams_are_the_users_settings_and_hp_metric_the_best_val_mean(finished_fit):
    result, run = finished_fit
    hparams = yaml.safe_load((run / "tb" / "hparams.yaml").read_text())
    assert set(hparams) == set(tiny_config().model_dump())
    assert (run / "tb" / "hparams.yaml").stat().st_size < 4000
    best = torch.load(result.best_checkpoint, weights_only=True)["callbacks"]
    score = next(v["best_model_score"] for k, v in best.items() if k.startswith("ModelCheckpoint"))
    (hp_metric,) = tensorboard_scalars(run)["hp_metric"]
    assert hp_metric == pytest.approx(float(score), rel=1e-6)
    assert hp_metric == pytest.approx(min(tensorboard_scalars(run)["val/mean_km"]), rel=1e-6)
