"""train.lr_find: Lightning's finder before the fit, recorded, used only when asked."""

import json

import pytest
import torch
import yaml
from pytorch_lightning.callbacks import Callback

from geoguesser.training.fit import train
from helpers.configs import tiny_config


class Crash(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated power cut")


def fit(enriched, run_dir, **overrides):
    table, cells, scaler, border = enriched
    settings = tiny_config(max_epochs=1, freeze_epochs=1, lr_find_steps=20, **overrides)
    return train(settings, table, cells, scaler, run_dir, border)


def test_show_records_the_curve_and_trains_exactly_as_off_would(enriched, tmp_path):
    off = fit(enriched, tmp_path / "off", lr_find="off")
    show = fit(enriched, tmp_path / "show", lr_find="show")
    assert not (tmp_path / "off" / "lr_find.json").exists()
    record = json.loads((tmp_path / "show" / "lr_find.json").read_text())
    assert record["mode"] == "show" and record["used"] is False and record["lr"] == 3e-3
    assert record["steps"] > 11 and record["suggestion"] > 0
    assert (tmp_path / "show" / "figures" / "lr_find.png").stat().st_size > 0
    assert not list((tmp_path / "show").rglob(".lr_find*"))  # its scratch stays outside the run
    assert show.test == off.test  # the finder ran on a copy, with the random state restored
    for a, b in zip(off.model.state_dict().values(), show.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_use_trains_with_the_suggestion_and_a_resume_keeps_it(enriched, tmp_path, capsys):
    table, cells, scaler, border = enriched
    settings = tiny_config(max_epochs=2, freeze_epochs=1, lr_find="use", lr_find_steps=20)
    with pytest.raises(RuntimeError, match="simulated power cut"):
        train(settings, table, cells, scaler, tmp_path, border, callbacks=[Crash()])
    record = json.loads((tmp_path / "lr_find.json").read_text())
    assert record["used"] is True and record["lr"] == record["suggestion"] != 3e-3
    written = (tmp_path / "lr_find.json").stat().st_mtime_ns
    capsys.readouterr()
    result = train(settings, table, cells, scaler, tmp_path, border)
    out = capsys.readouterr().out
    assert "resuming the fit after epoch 1" in out
    assert f"learning-rate finder not run again: resuming with lr {record['lr']:.3g}" in out
    assert (tmp_path / "lr_find.json").stat().st_mtime_ns == written
    saved = torch.load(result.last_checkpoint, weights_only=True)
    assert saved["hyper_parameters"]["settings"]["lr"] == record["lr"]


@pytest.mark.parametrize("value, mode", [("true", "show"), ("off", "off"), ("use", "use")])
def test_yaml_booleans_read_as_show_and_off(value, mode):
    # YAML 1.1 (a config file) reads a bare off as False, and the example is `true`
    assert tiny_config(lr_find=yaml.safe_load(value)).lr_find == mode
