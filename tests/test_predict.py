import os
import pickle

import pandas as pd
import pytest
import torch

from conftest import make_dataset, tiny_config, tree_bytes
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
        (
            {"geoguesser": {"format": 2, "version": "0.1.0"}, "state_dict": {}},
            "made by geoguesser 0.1.0 in checkpoint format 2; this version reads format 4",
        ),
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


def out_is_a_folder(tmp_path):
    (tmp_path / "preds").mkdir()
    return tmp_path / "preds", "is a folder; give the path of the CSV file to write"


def out_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    return (
        tmp_path / "file" / "preds.csv",
        f"cannot be written ({tmp_path / 'file'} is not a folder)",
    )


def out_inside_the_dataset(tmp_path):
    return tmp_path / "ds" / "preds.csv", "is inside the dataset"


@pytest.mark.parametrize("make_out", [out_is_a_folder, out_under_a_file, out_inside_the_dataset])
def test_an_out_that_cannot_take_the_csv_is_one_line_exit_2(checkpoint, tmp_path, capsys, make_out):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    out, message = make_out(tmp_path)
    before = tree_bytes(root)
    assert main(["predict", "--checkpoint", str(checkpoint), str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"geoguesser predict: {out}: ") and message in err[0]
    assert tree_bytes(root) == before


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"", b"PK\x03\x04" + bytes(100), pickle.dumps({"x": print})],
    ids=["random bytes", "empty", "broken zip", "pickled function"],
)
def test_no_checkpoint_message_recommends_loading_it_unsafely(tmp_path, capsys, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    root = make_dataset(tmp_path / "ds", with_csv=False)
    assert (
        main(["predict", "--checkpoint", str(path), str(root), "--out", str(tmp_path / "p.csv")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"geoguesser predict: {path}: not a loadable checkpoint"
    )
    assert "weights_only" not in err[0] and "False" not in err[0] and "torch.load" not in err[0]


def test_with_confidence_adds_the_expected_error_and_nothing_else(checkpoint, tmp_path):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    out = tmp_path / "preds.csv"
    args = ["predict", "--checkpoint", str(checkpoint), str(root), "--out", str(out)]
    assert main([*args, "--with-confidence"]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["uuid", "latitude", "longitude", "expected_error_km"]
    assert (frame.expected_error_km > 0).all() and frame.expected_error_km.lt(1000).all()
