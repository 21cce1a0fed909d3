import pandas as pd
import pytest
import torch

from conftest import make_dataset, tiny_config
from geoguesser.cli import main
from geoguesser.train import train


@pytest.fixture(scope="module")
def checkpoint(enriched, tmp_path_factory):
    table, cells, scaler, border = enriched
    run = tmp_path_factory.mktemp("run")
    return train(
        tiny_config(max_epochs=1, freeze_epochs=0), table, cells, scaler, run, border
    ).last_checkpoint


def test_predict_writes_the_competition_csv_for_both_layouts(checkpoint, tmp_path, capsys):
    labelled = make_dataset(tmp_path / "labelled")
    unlabelled = make_dataset(tmp_path / "unlabelled", prefix="test", with_csv=False)
    out = tmp_path / "preds.csv"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                str(labelled),
                str(unlabelled),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["uuid", "latitude", "longitude"] and len(frame) == 12
    assert frame.latitude.between(42, 47).all() and frame.longitude.between(13, 20).all()


def test_prediction_folder_missing_a_view_is_one_line_exit_2(checkpoint, tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    (root / "images/loc-0002/270.jpg").unlink()
    out = tmp_path / "preds.csv"
    assert main(["predict", "--checkpoint", str(checkpoint), str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"geoguesser predict: {root / 'images/loc-0002/270.jpg'}: missing"]
    assert not out.exists()


class NotAllowed:
    pass


@pytest.mark.parametrize(
    "content, message",
    [
        ({"state_dict": {}}, "not a geoguesser checkpoint"),
        ({"geoguesser": {"format": 99}, "state_dict": {}}, "checkpoint format 99"),
        ({"payload": NotAllowed()}, "not a loadable checkpoint"),
    ],
)
def test_foreign_checkpoints_are_refused_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "other.ckpt"
    torch.save(content, path)
    root = make_dataset(tmp_path / "ds", with_csv=False)
    assert (
        main(["predict", "--checkpoint", str(path), str(root), "--out", str(tmp_path / "p.csv")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
