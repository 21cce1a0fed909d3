import os
import pickle

import pandas as pd
import pytest
import torch
from PIL import Image

from geoguesser.cli import main
from geoguesser.training.fit import train
from helpers.configs import tiny_config
from helpers.datasets import make_dataset
from helpers.snapshots import tree_bytes


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


# --- writing is never destroying -------------------------------------------------------


def predict_into(checkpoint, root, out, *options):
    return main(
        ["predict", "--checkpoint", str(checkpoint), str(root), "--out", str(out), *options]
    )


def test_out_replaces_only_what_predict_wrote_unless_overwrite(checkpoint, tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("uuid,latitude,longitude,mine\nmy notes\n")
    assert predict_into(checkpoint, root, notes) == 2
    assert notes.read_text() == "uuid,latitude,longitude,mine\nmy notes\n"
    assert "exists and is not a predictions CSV" in capsys.readouterr().err
    assert predict_into(checkpoint, root, notes, "--overwrite") == 0
    assert list(pd.read_csv(notes).columns) == ["uuid", "latitude", "longitude"]
    out = tmp_path / "preds.csv"
    for options in ([], ["--with-confidence"], []):  # each replaces the one before
        assert predict_into(checkpoint, root, out, *options) == 0
    assert list(pd.read_csv(out).columns) == ["uuid", "latitude", "longitude"]


def test_the_checkpoint_is_never_the_out_by_any_path(checkpoint, tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    model = tmp_path / "model.ckpt"
    model.write_bytes(checkpoint.read_bytes())
    (tmp_path / "alias").symlink_to(tmp_path)  # the same file through another folder name
    before = model.read_bytes()
    for out in (model, tmp_path / "alias" / "model.ckpt", tmp_path / "sub" / ".." / "model.ckpt"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert predict_into(model, root, out, "--overwrite") == 2
        assert "an input is never overwritten" in capsys.readouterr().err
    assert model.read_bytes() == before


def test_a_photo_is_never_the_out(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "pier.jpg").write_bytes(
        (make_dataset(tmp_path / "ds") / "images/loc-0000/0.jpg").read_bytes()
    )
    before = tree_bytes(photos)
    args = ["predict", "--checkpoint", str(checkpoint), "--photos", str(photos), "--overwrite"]
    assert main([*args, "--out", str(photos / "pier.jpg")]) == 2
    assert "nothing is written into a dataset" in capsys.readouterr().err
    assert tree_bytes(photos) == before


def test_a_failed_run_leaves_the_old_csv_as_it_was(checkpoint, tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    out = tmp_path / "preds.csv"
    assert predict_into(checkpoint, root, out) == 0
    before = out.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("geoguesser.inference.predict.predict_table", interrupted)
    assert predict_into(checkpoint, root, out) == 130
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "ds",
        "preds.csv",
    ]


# --- found before the model loads ------------------------------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the inputs were checked")

    monkeypatch.setattr("geoguesser.inference.predict.load_checkpoint", refuse)


@pytest.mark.parametrize("batch_size", ["0", "-5"])
def test_a_batch_size_below_one_is_refused_before_loading(
    no_loading, checkpoint, tmp_path, capsys, batch_size
):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    assert predict_into(checkpoint, root, tmp_path / "p.csv", "--batch-size", batch_size) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"geoguesser predict: --batch-size {batch_size}: must be at least 1"
    ]


@pytest.mark.parametrize(
    "device", ["bogus", "cuda:7", "mps:3", "meta", f"cuda:{torch.cuda.device_count()}"]
)
def test_a_device_this_machine_lacks_is_refused_before_loading(
    no_loading, checkpoint, tmp_path, capsys, device
):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    assert predict_into(checkpoint, root, tmp_path / "p.csv", "--device", device) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"geoguesser predict: --device {device!r}: ")


def test_every_bad_photo_is_named_and_the_run_refused(no_loading, checkpoint, tmp_path, capsys):
    view = (make_dataset(tmp_path / "ds") / "images/loc-0000/0.jpg").read_bytes()
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "good.jpg").write_bytes(view)
    (photos / "cut.jpg").write_bytes(view[: len(view) // 2])
    (photos / os.fsdecode(b"\xff\xfe.jpg")).write_bytes(view)
    args = ["predict", "--checkpoint", str(checkpoint), "--photos", str(photos)]
    assert main([*args, "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and not (tmp_path / "p.csv").exists()
    assert err[0] == (
        f"geoguesser predict: {photos}/\\xff\\xfe.jpg: file name is not valid UTF-8;"
        " rename it (its stem is the uuid)"
    )
    assert err[1].startswith(f"geoguesser predict: {photos / 'cut.jpg'}: unreadable (")


def test_photo_sizes_follow_max_image_px(no_loading, checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (300, 20)).save(photos / "wide.png")
    args = [
        "predict",
        "--checkpoint",
        str(checkpoint),
        "--photos",
        str(photos),
        "--out",
        str(tmp_path / "p.csv"),
    ]
    assert main([*args, "--max-image-px", "256"]) == 2
    assert "declares 300 x 20 pixels, over the limit of 256 px a side" in capsys.readouterr().err


# --- checkpoints, checked whole --------------------------------------------------------


def changed(checkpoint: dict, change) -> dict:
    change(checkpoint)
    return checkpoint


CORRUPTIONS = {
    "no hyper_parameters": (lambda c: c.pop("hyper_parameters"), "no hyper_parameters"),
    "no geography": (
        lambda c: c["hyper_parameters"].pop("geography"),
        "hyper_parameters lack geography",
    ),
    "settings not a mapping": (
        lambda c: c["hyper_parameters"].update(settings=[1]),
        "not a mapping",
    ),
    "a stale setting": (
        lambda c: c["hyper_parameters"]["settings"].update(image_size=-3),
        "setting image_size: ",
    ),
    "a damaged geography": (
        lambda c: c["hyper_parameters"]["geography"].pop("scaler"),
        "its geography or normalization does not build a network (KeyError: 'scaler')",
    ),
    "no state_dict": (lambda c: c.pop("state_dict"), "no state_dict (the trained weights)"),
    "a missing weight": (
        lambda c: c["state_dict"].pop("net.head.1.bias"),
        "weights: net.head.1.bias is missing",
    ),
    "a weight of another shape": (
        lambda c: c["state_dict"].update({"net.head.1.bias": torch.zeros(9)}),
        "weights: net.head.1.bias has shape (9,); the network's is (3,)",
    ),
    "a weight that is no tensor": (
        lambda c: c["state_dict"].update({"net.head.1.bias": [0.0, 0.0, 0.0]}),
        "weights: net.head.1.bias is not a tensor",
    ),
    "a damaged retrieval index": (
        lambda c: c.update(retrieval={"xy": 1}),
        "its retrieval index is damaged",
    ),
    "a retrieval index of another size": (
        lambda c: c.update(
            retrieval={
                "embeddings": torch.zeros(4, 7),
                "xy": torch.zeros(4, 2),
                "labels": torch.zeros(4),
            }
        ),
        "its retrieval index does not fit the network (embeddings (4, 7), xy (4, 2), labels (4,),",
    ),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_every_way_a_checkpoint_is_broken_is_a_user_error_naming_it(
    small_model, tmp_path, corruption
):
    from geoguesser.errors import UserError
    from geoguesser.model.checkpoint import load_checkpoint, write_checkpoint

    change, message = CORRUPTIONS[corruption]
    path = write_checkpoint(small_model[0], tmp_path / "model.ckpt")
    load_checkpoint(path)  # whole, it loads
    torch.save(changed(torch.load(path, weights_only=True), change), path)
    with pytest.raises(UserError) as refused:
        load_checkpoint(path)
    lines = str(refused.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines) and message in lines[0]


def test_a_checkpoint_of_another_network_names_its_first_mismatches(small_model, tmp_path):
    from geoguesser.errors import UserError
    from geoguesser.model.checkpoint import MAX_WEIGHT_LINES, load_checkpoint, write_checkpoint

    path = write_checkpoint(small_model[0], tmp_path / "model.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = {f"other.{k}": v for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, path)
    with pytest.raises(UserError) as refused:
        load_checkpoint(path)
    lines = str(refused.value).splitlines()
    assert len(lines) == MAX_WEIGHT_LINES + 1 and lines[-1].endswith("more weight mismatches")


def test_a_dataset_and_an_out_whose_names_are_not_utf8_predict(checkpoint, tmp_path, capsys):
    root = make_dataset(tmp_path / os.fsdecode(b"ds-\xff"), with_csv=False)
    out = tmp_path / os.fsdecode(b"preds-\xfe.csv")
    assert predict_into(checkpoint, root, out) == 0
    assert len(pd.read_csv(out)) == 6
    assert capsys.readouterr().out.strip().endswith("preds-\\xfe.csv")
