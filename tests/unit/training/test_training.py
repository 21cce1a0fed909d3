import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import Callback

from geoguesser.errors import UserError
from geoguesser.geo.grid import write_cells
from geoguesser.inference.predict import predict_table
from geoguesser.model.checkpoint import load_checkpoint
from geoguesser.model.geography import Geography
from geoguesser.training.fit import fit_fingerprint, train
from helpers.configs import tiny_config
from helpers.paths import HELPERS


@pytest.mark.parametrize("objective", ["classification", "regression"])
@pytest.mark.parametrize("fusion", ["concat", "mean"])
def test_short_fit_and_test(enriched, tmp_path, objective, fusion):
    table, cells, scaler, border = enriched
    result = train(
        tiny_config(objective=objective, fusion=fusion), table, cells, scaler, tmp_path, border
    )
    assert result.epochs == 2
    for split in ("val", "test"):
        metrics = getattr(result, split)
        assert math.isfinite(metrics[f"{split}/mean_km"]) and metrics[f"{split}/mean_km"] > 0
        assert 0 <= metrics[f"{split}/acc_100km"] <= 1 and 0 < metrics[f"{split}/geoscore"] <= 5000
        assert (f"{split}/acc_class" in metrics) == (objective == "classification")
    assert result.best_checkpoint.exists() and result.last_checkpoint.exists()
    assert any((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_checkpoint_predictions_equal_the_in_memory_model(enriched, tmp_path):
    table, cells, scaler, border = enriched
    result = train(
        tiny_config(max_epochs=1, freeze_epochs=0), table, cells, scaler, tmp_path, border
    )
    rows = table[table.split == "test"]
    in_memory = predict_table(result.model, rows, progress=False)
    reloaded = predict_table(load_checkpoint(result.last_checkpoint), rows, progress=False)
    assert np.allclose(in_memory.pred_lat, reloaded.pred_lat, atol=1e-9)
    assert np.allclose(in_memory.pred_lon, reloaded.pred_lon, atol=1e-9)
    assert {"pred_weighted_argmax_lat", "pred_clipped_mean_lon", "error_km", "split"} <= set(
        reloaded.columns
    )


def test_feature_cache_trains_the_head_exactly_as_recomputing_would(enriched, tmp_path):
    table, cells, scaler, border = enriched
    settings = dict(max_epochs=3, freeze_epochs=3, augment=False, scheduler="none")
    cached = train(
        tiny_config(feature_cache=True, **settings), table, cells, scaler, tmp_path / "a", border
    )
    plain = train(
        tiny_config(feature_cache=False, **settings), table, cells, scaler, tmp_path / "b", border
    )
    for a, b in zip(
        cached.model.net.head.parameters(), plain.model.net.head.parameters(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5)
    # The frozen backbone really stayed as it was.
    for a, b in zip(
        cached.model.net.backbone.state_dict().values(),
        plain.model.net.backbone.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)


class Crash(Callback):
    def __init__(self, at_epoch: int):
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("simulated power cut")


class EpochRecorder(Callback):
    def __init__(self):
        self.epochs = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append(trainer.current_epoch)


def test_interrupted_fit_resumes_and_finishes_the_same_number_of_epochs(enriched, tmp_path):
    table, cells, scaler, border = enriched
    config = tiny_config(max_epochs=3, freeze_epochs=1)
    with pytest.raises(RuntimeError, match="simulated power cut"):
        train(config, table, cells, scaler, tmp_path, border, callbacks=[Crash(at_epoch=2)])
    assert torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1
    recorder = EpochRecorder()
    result = train(config, table, cells, scaler, tmp_path, border, callbacks=[recorder])
    assert recorder.epochs == [2] and result.epochs == 3
    batches_per_epoch = math.ceil((table.split == "train").sum() / config.batch_size)
    assert (
        torch.load(result.last_checkpoint, weights_only=True)["global_step"]
        == 3 * batches_per_epoch
    )


class LastCheckpointEpochs(Callback):
    """The epoch that last.ckpt holds as each epoch starts, i.e. once the one before is over."""

    def __init__(self):
        self.epochs, self.val_km = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        self.epochs.append(torch.load(last, weights_only=True)["epoch"] if last.exists() else None)

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.val_km.append(float(trainer.callback_metrics["val/mean_km"]))


def test_last_checkpoint_is_every_finished_epoch_even_when_validation_got_worse(enriched, tmp_path):
    """A killed fit resumes after its last finished epoch, not after its last best one.

    Lightning 2.6 writes last.ckpt only in a step that also wrote a top-k checkpoint, so
    after an epoch whose validation did not improve, last.ckpt kept an earlier epoch.
    """
    table, cells, scaler, border = enriched
    recorder = LastCheckpointEpochs()
    # A learning rate far too high: validation jumps about instead of improving every epoch.
    config = tiny_config(max_epochs=4, freeze_epochs=1, lr=10.0)
    result = train(config, table, cells, scaler, tmp_path, border, callbacks=[recorder])
    val = recorder.val_km
    assert len(val) == 4 and any(val[i] >= min(val[:i]) for i in range(1, 4)), val
    assert recorder.epochs == [None, 0, 1, 2]
    assert torch.load(result.last_checkpoint, weights_only=True)["epoch"] == 3
    # The best checkpoint is still the best epoch's, and the only one left.
    best = f"best-epoch{int(np.argmin(val)):03d}.ckpt"
    assert [p.name for p in (tmp_path / "checkpoints").glob("best-epoch*.ckpt")] == [best]
    assert result.best_checkpoint.name == best


def test_broken_image_is_named_before_training_starts(enriched, tmp_path, synthetic_dir):
    table, cells, scaler, border = enriched
    broken = table.copy()
    broken.loc[0, "uuid"] = "no-such-location"
    with pytest.raises(UserError, match="no-such-location/0.jpg: missing"):
        train(tiny_config(), broken, cells, scaler, tmp_path, border)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "vit_b_16"}, "cannot take 32 px"),
    ],
)
def test_bad_model_settings_are_user_errors(enriched, tmp_path, overrides, message):
    table, cells, scaler, border = enriched
    with pytest.raises(UserError, match=message):
        train(tiny_config().model_copy(update=overrides), table, cells, scaler, tmp_path, border)


RESUME_SETTINGS = dict(
    backbone="tinycnn", image_size=32, batch_size=8, num_workers=0, max_epochs=4,
    freeze_epochs=1, lr=3e-3, backbone_lr=1e-3, scheduler="plateau", plateau_patience=0,
    plateau_factor=0.5, augment=True, feature_cache=True, progress_bar=False,
    accelerator="cpu", devices=1,
)  # fmt: skip


def fit_job(inputs, run_dir, *kill) -> subprocess.CompletedProcess:
    script = HELPERS / "fit_job.py"
    arguments = [str(inputs), str(run_dir), json.dumps(RESUME_SETTINGS), *map(str, kill)]
    return subprocess.run(
        [sys.executable, str(script), *arguments], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def fit_inputs(enriched, tmp_path_factory):
    table, cells, scaler, _ = enriched
    inputs = tmp_path_factory.mktemp("fit-inputs")
    table.to_csv(inputs / "enriched.csv", index=False)
    write_cells(cells, inputs / "cells.geojson")
    (inputs / "scaler.json").write_text(scaler.to_json())
    return inputs


@pytest.fixture(scope="module")
def uninterrupted(fit_inputs, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    job = fit_job(fit_inputs, run_dir)
    assert job.returncode == 0, job.stderr
    return json.loads((run_dir / "result.json").read_text())


@pytest.mark.parametrize("kill_epoch, kill_batch", [(1, 0), (2, 2)])
def test_a_killed_fit_resumes_to_the_uninterrupted_result(
    fit_inputs, uninterrupted, tmp_path, kill_epoch, kill_batch
):
    killed = fit_job(fit_inputs, tmp_path, kill_epoch, kill_batch)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    resumed = fit_job(fit_inputs, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming the fit after epoch {kill_epoch} from" in resumed.stdout
    assert json.loads((tmp_path / "result.json").read_text()) == uninterrupted


def test_other_settings_or_a_finished_fit_start_afresh(enriched, tmp_path, capsys):
    table, cells, scaler, border = enriched
    config = tiny_config(max_epochs=2, freeze_epochs=1)
    train(config, table, cells, scaler, tmp_path, border)
    recorder = EpochRecorder()
    changed = tiny_config(max_epochs=2, freeze_epochs=1, lr=1e-2)
    train(changed, table, cells, scaler, tmp_path, border, callbacks=[recorder])
    assert recorder.epochs == [0, 1]
    out = capsys.readouterr().out
    assert "starting the fit afresh: last.ckpt was made with other settings or data" in out
    recorder = EpochRecorder()
    train(changed, table, cells, scaler, tmp_path, border, callbacks=[recorder])
    assert recorder.epochs == [0, 1]
    assert "starting the fit afresh: last.ckpt is of a finished fit" in capsys.readouterr().out
    # Only how fast or how loudly it runs changed: an interrupted fit would still continue.
    assert fit_fingerprint(changed, table, Geography.of(cells, scaler, border)) == fit_fingerprint(
        changed.model_copy(update={"num_workers": 3, "progress_bar": True}),
        table,
        Geography.of(cells, scaler, border),
    )


def test_a_damaged_last_checkpoint_is_one_line_naming_it(enriched, tmp_path):
    table, cells, scaler, border = enriched
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"PK\x03\x04 half a zip file")
    with pytest.raises(UserError, match="last.ckpt: damaged checkpoint, not resumable; delete it"):
        train(tiny_config(), table, cells, scaler, tmp_path, border)
