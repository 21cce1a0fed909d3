"""The docs' table of bad inputs, run: each row's case gets the exit status and message it lists.

The table is read from docs/bad-input.md (the site's page "Bad input"), so that it cannot drift
from what the commands do: a row without a case here, a case without a row, or a row whose
message changed all fail.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import socket
import struct
import zlib
from itertools import dropwhile, takewhile
from pathlib import Path

import pytest
import torch
from PIL import Image

from geoguesser.cli import main
from geoguesser.data.enrich import prepare
from geoguesser.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from geoguesser.data.validate import load_locations
from geoguesser.geo.borders import load_border
from geoguesser.geo.splits import split_locations
from geoguesser.model.checkpoint import write_checkpoint
from geoguesser.model.geography import Geography
from geoguesser.model.locator import GeoLocator
from helpers.configs import tiny_config
from helpers.datasets import make_dataset
from helpers.fake_streetview import KEY, FakeStreetView
from helpers.images import declare_size, jpeg_bytes
from helpers.paths import REPO
from helpers.snapshots import tree_bytes

PAGE = REPO / "docs" / "bad-input.md"
SECTION = "# Bad input: what each command does with it"  # the page's title


def page_rows() -> dict[str, tuple[int, str]]:
    """{case: (exit status, message)} from the page's table, the first after its title."""
    lines = PAGE.read_text().split(SECTION, 1)[1].splitlines()
    table = takewhile(
        lambda x: x.startswith("|"), dropwhile(lambda x: not x.startswith("|"), lines)
    )
    rows = {}
    for line in list(table)[2:]:  # after the header and its rule
        case, _command, status, message = (c.strip() for c in line.strip("|").split(" | "))
        rows[case] = (int(status), message.strip("`"))
    return rows


def view(ds: Path) -> Path:
    return ds / "images/loc-0001/90.jpg"


def validate_after(change, *options: str):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        change(ds)
        return ["validate", str(ds), *options]

    return case


def write_csv_text(text: str, encoding: str = "utf-8"):
    return lambda ds: (ds / "data.csv").write_bytes(text.encode(encoding))


def unreadable_csv(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
    # Tests run as root, whom no file mode stops: the file system's refusal is played here.
    real = Path.read_bytes

    def refuse(path):
        if path == ds / "data.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    return ["validate", str(ds)]


def csv_as_folder(ds: Path):
    (ds / "data.csv").unlink()
    (ds / "data.csv").mkdir()


def bom_crlf(ds: Path):
    text = (ds / "data.csv").read_text().replace("\n", "\r\n")
    (ds / "data.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())


def predict_out(make_out):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        return ["predict", "--checkpoint", str(tmp / "none.ckpt"), str(ds), "--out",
                str(make_out(ds, tmp))]  # fmt: skip

    return case


def folder_out(ds: Path, tmp: Path) -> Path:
    (tmp / "preds").mkdir()
    return tmp / "preds"


def out_under_a_file(ds: Path, tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file" / "preds.csv"


def predict_checkpoint(content: bytes):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        (tmp / "bad.ckpt").write_bytes(content)
        return ["predict", "--checkpoint", str(tmp / "bad.ckpt"), str(ds), "--out",
                str(tmp / "p.csv")]  # fmt: skip

    return case


def predict_photos(make_photos, *dirs: str):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        photos = make_photos(ds, tmp)
        return ["predict", "--checkpoint", str(tmp / "none.ckpt"), "--photos", str(photos),
                *dirs, "--out", str(tmp / "p.csv")]  # fmt: skip

    return case


def photos_without_images(ds: Path, tmp: Path) -> Path:
    (tmp / "photos").mkdir()
    (tmp / "photos" / "notes.txt").write_text("no photo here")
    return tmp / "photos"


def photos_with_a_broken_one(ds: Path, tmp: Path) -> Path:
    (tmp / "photos").mkdir()
    (tmp / "photos" / "pier.jpg").write_bytes(os.urandom(512))
    return tmp / "photos"


def existing_notes(ds: Path, tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("my notes, not predictions\n")
    return tmp / "notes.txt"


def link_out(ds: Path, tmp: Path) -> Path:
    (tmp / "preds.csv").write_text("uuid,latitude,longitude\n")
    (tmp / "link.csv").symlink_to(tmp / "preds.csv")
    return tmp / "link.csv"


def fifo_out(ds: Path, tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo")
    return tmp / "fifo"


def predict_with(*options: str):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        return ["predict", "--checkpoint", str(tmp / "none.ckpt"), str(ds), "--out",
                str(tmp / "p.csv"), *options]  # fmt: skip

    return case


def out_is_the_checkpoint(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
    (tmp / "model.ckpt").write_bytes(b"a trained model")
    return ["predict", "--checkpoint", str(tmp / "model.ckpt"), str(ds), "--out",
            str(tmp / "model.ckpt"), "--overwrite"]  # fmt: skip


def png_bytes(side: int, declared: int) -> bytes:
    """A PNG of `side` pixels whose header (IHDR, CRC fixed) declares `declared` a side."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (10, 120, 200)).save(buffer, format="PNG")
    data = buffer.getvalue()
    chunk = b"IHDR" + struct.pack(">IIBBBBB", declared, declared, 8, 2, 0, 0, 0)
    header = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return data[:8] + header + data[33:]


def photos_with(name: str | bytes, content):
    def make(ds: Path, tmp: Path) -> Path:
        (tmp / "photos").mkdir()
        (tmp / "photos" / "quay.jpg").write_bytes(view(ds).read_bytes())
        (tmp / "photos" / os.fsdecode(name)).write_bytes(content(ds))
        return tmp / "photos"

    return make


def checkpoint_changed(change):
    """A geoguesser checkpoint of today's format (an untrained tinycnn), then `change`d."""

    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        border = load_border()
        locations, _ = load_locations([ds], border=border)
        locations = split_locations(locations, fractions=(0.5, 0.25, 0.25), seed=0)
        _table, cells, scaler = prepare(locations, border, cell_km=100)
        geography = Geography.of(cells, scaler, border)
        model = GeoLocator(geography, tiny_config(), IMAGENET_MEAN, IMAGENET_STD)
        path = write_checkpoint(model, tmp / "model.ckpt")
        checkpoint = torch.load(path, weights_only=True)
        change(checkpoint)
        torch.save(checkpoint, path)
        return ["predict", "--checkpoint", str(path), str(ds), "--out", str(tmp / "p.csv")]

    return case


def reshape_head(checkpoint: dict) -> None:
    state = checkpoint["state_dict"]
    state["net.head.1.weight"] = torch.zeros(7, *state["net.head.1.weight"].shape[1:])


def unlabelled_with_a_bad_name(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
    folders = make_dataset(tmp / "unlabelled", with_csv=False)
    (folders / "images/loc-0000").rename(folders / "images" / os.fsdecode(b"loc-\xff"))
    return ["predict", "--checkpoint", str(tmp / "none.ckpt"), str(folders), "--out",
            str(tmp / "p.csv")]  # fmt: skip


def download(*options, into_dataset: bool = False, setup=None):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        (tmp / "coords.csv").write_text("latitude,longitude\n45.30,15.90\n45.31,15.92\n")
        (tmp / "key.txt").write_text(KEY)
        if setup:
            setup(server)
        out = ds if into_dataset else tmp / "new"
        return ["download", str(tmp / "coords.csv"), "--out", str(out), "--key-file",
                str(tmp / "key.txt"), "--base-url", server.base_url, "--retries", "0",
                *options]  # fmt: skip

    return case


def training_on(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
    (ds / "data.csv").unlink()
    return ["sample-coords", "--fill-cells", "3", "--n", "5", "--dataset", str(ds),
            "--out", str(tmp / "points.csv")]  # fmt: skip


def config_with(*overrides: str):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        settings = [f"data.dataset_dirs=[{ds}]", *overrides]
        return [
            "config",
            str(REPO / "configs/demo.yaml"),
            *[a for o in settings for a in ("--set", o)],
        ]

    return case


def units(coordinates, kind: str) -> str:
    """A GeoJSON file's text holding one feature of that geometry."""
    geometry = {"type": kind, "coordinates": coordinates}
    feature = {"type": "Feature", "properties": {"name": "unit"}, "geometry": geometry}
    return json.dumps({"type": "FeatureCollection", "features": [feature]})


def regions_file(text: str):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        (tmp / "units.geojson").write_text(text)
        overrides = ("grid.kind=regions", f"grid.regions={tmp / 'units.geojson'}")
        return config_with(*overrides)(ds, tmp, server, monkeypatch)

    return case


def tune_with(space: str, *options: str):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        (tmp / "space.yaml").write_text(space)
        return ["tune", "--config", str(REPO / "configs/demo.yaml"), "--space",
                str(tmp / "space.yaml"), "--trials", "2", "--runs", str(tmp / "runs"),
                "--set", f"data.dataset_dirs=[{ds}]", *options]  # fmt: skip

    return case


def fit_of(make_run_dir):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        return ["train", "--run-dir", str(make_run_dir(ds, tmp))]

    return case


def serve_with(*options, hold_port: bool = False, setup=None):
    def case(ds: Path, tmp: Path, server, monkeypatch) -> list[str]:
        if setup:
            setup(tmp)
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        if hold_port:
            taken.listen()
            server.held = taken  # kept open while the command runs; the fixture ends with it
        else:
            taken.close()  # a port free a moment ago: the command fails before listening
        return ["serve", "--port", str(port), *(o.replace("TMP", str(tmp)) for o in options)]

    return case


CASES = {
    "a view declaring 30000 x 30000 pixels": validate_after(
        lambda ds: view(ds).write_bytes(declare_size(jpeg_bytes(64), 30000, 30000))
    ),
    "a view declaring 12000 x 12000 pixels around 64 px of data": validate_after(
        lambda ds: view(ds).write_bytes(declare_size(jpeg_bytes(64), 12000, 12000))
    ),
    "a view declaring 640 x 640 pixels around 64 px of data (fast check)": validate_after(
        lambda ds: view(ds).write_bytes(declare_size(jpeg_bytes(64), 640, 640))
    ),
    "a view declaring 640 x 640 pixels around 64 px of data, `--deep`": validate_after(
        lambda ds: view(ds).write_bytes(declare_size(jpeg_bytes(64), 640, 640)), "--deep"
    ),
    "a truncated JPEG": validate_after(
        lambda ds: view(ds).write_bytes(view(ds).read_bytes()[:-20])
    ),
    "random bytes as a view": validate_after(lambda ds: view(ds).write_bytes(os.urandom(500))),
    "a folder where a view should be": validate_after(
        lambda ds: view(ds).unlink() or view(ds).mkdir()
    ),
    "`data.csv` is a folder": validate_after(csv_as_folder),
    "`data.csv` cannot be read": unreadable_csv,
    "`data.csv` in UTF-16": validate_after(
        lambda ds: write_csv_text((ds / "data.csv").read_text(), "utf-16")(ds)
    ),
    "`data.csv` separated by semicolons": validate_after(
        write_csv_text("uuid;latitude;longitude\nloc-0000;45.8;15.9\n")
    ),
    "`data.csv` naming a column twice": validate_after(
        write_csv_text("uuid,uuid,latitude,longitude\n")
    ),
    "`data.csv` with NaN, inf or 1e400 as a coordinate": validate_after(
        lambda ds: write_csv_text((ds / "data.csv").read_text().replace("45.815,", "nan,"))(ds)
    ),
    "`data.csv` with a BOM and CRLF line ends": validate_after(bom_crlf),
    "uuid folders without `data.csv`": validate_after(lambda ds: (ds / "data.csv").unlink()),
    "uuid folders without `data.csv`, for training": training_on,
    "`--out` an existing folder": predict_out(folder_out),
    "`--out` under a file": predict_out(out_under_a_file),
    "`--out` inside the dataset": predict_out(lambda ds, tmp: ds / "preds.csv"),
    "a checkpoint of random bytes": predict_checkpoint(os.urandom(4096)),
    "a checkpoint holding code (a pickled function)": predict_checkpoint(
        pickle.dumps({"x": print})
    ),
    "`--photos` a folder without image files": predict_photos(photos_without_images),
    "`--photos` with random bytes as a photo": predict_photos(photos_with_a_broken_one),
    "`--photos` and dataset folders together": predict_photos(photos_without_images, "dataset-dir"),
    "`--photos` with a truncated JPEG": predict_photos(
        photos_with("pier.jpg", lambda ds: view(ds).read_bytes()[:-40])
    ),
    "`--photos` with a PNG declaring 30000 x 30000 pixels": predict_photos(
        photos_with("pier.png", lambda ds: png_bytes(64, 30000))
    ),
    "`--photos` with a PNG whose header promises more data than it has": predict_photos(
        photos_with("pier.png", lambda ds: png_bytes(64, 2000))
    ),
    "`--photos` with a photo whose name is not UTF-8": predict_photos(
        photos_with(b"caf\xe9.jpg", lambda ds: view(ds).read_bytes())
    ),
    "a location folder whose name is not UTF-8": unlabelled_with_a_bad_name,
    "`--out` an existing file that predict did not write": predict_out(existing_notes),
    "`--out` the checkpoint, even with `--overwrite`": out_is_the_checkpoint,
    "`--out` a symbolic link": predict_out(link_out),
    "`--out` a FIFO": predict_out(fifo_out),
    "`--batch-size 0`": predict_with("--batch-size", "0"),
    "`--batch-size -1`": predict_with("--batch-size", "-1"),
    "`--device cuda:7`": predict_with("--device", "cuda:7"),
    "`--device bogus`": predict_with("--device", "bogus"),
    "a checkpoint without `hyper_parameters`": checkpoint_changed(
        lambda c: c.pop("hyper_parameters")
    ),
    "a checkpoint whose settings no longer validate": checkpoint_changed(
        lambda c: c["hyper_parameters"]["settings"].update(old_knob=1)
    ),
    "a checkpoint whose weights have another shape": checkpoint_changed(reshape_head),
    "a checkpoint with a weight the network lacks": checkpoint_changed(
        lambda c: c["state_dict"].update({"net.extra.weight": torch.zeros(3)})
    ),
    "a fit strategy that cannot work": config_with("train.strategy=fsdp"),
    "several nodes without DDP": config_with("train.num_nodes=2"),
    "a band of rows whose top is below its bottom": config_with("train.view_rows=[0.8,0.3]"),
    "the learning-rate finder with several processes": config_with(
        "train.lr_find=show", "train.devices=2", "train.strategy=ddp"
    ),
    "an unknown grid kind": config_with("grid.kind=hexagons"),
    "a setting of another grid kind": config_with("grid.cells=40"),
    "a regions file that cannot be read": regions_file("{not json"),
    "a regions file without polygons": regions_file(units([16, 45], "Point")),
    "a regions file away from the border": regions_file(
        units([[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]], "Polygon")
    ),
    "a space file with a misspelt setting": tune_with("train.lrr: {low: 1.0e-4, high: 0.01}"),
    "a space range whose low is above its high": tune_with("train.lr: {low: 0.1, high: 0.01}"),
    "a space range the settings schema refuses": tune_with("train.lr: {low: -1.0, high: 0.1}"),
    "a space file naming an unknown pruner": tune_with("train.lr: [0.1]\npruner: {kind: best}"),
    "`--trials 0`": tune_with("train.lr: [0.1]", "--trials", "0"),
    "`--run-dir` a dataset, not a run": fit_of(lambda ds, tmp: ds),
    "`--run-dir` a run without steps 01-03": fit_of(
        lambda ds, tmp: (
            (tmp / "run").mkdir() or (tmp / "run" / ".geoguesser-run").touch() or tmp / "run"
        )
    ),
    "a checkpoint that is not there": serve_with("--checkpoint", "TMP/none.ckpt"),
    "`--checkpoint-dir` that is not a folder": serve_with("--checkpoint-dir", "TMP/nothing"),
    "a port in use": serve_with("--checkpoint", "TMP/none.ckpt", hold_port=True),
    "a checkpoint that cannot load": serve_with(
        "--checkpoint", "TMP/bad.ckpt", setup=lambda tmp: (tmp / "bad.ckpt").write_bytes(b"x" * 99)
    ),
    "`--checkpoint` a folder": serve_with(
        "--checkpoint", "TMP/dir.ckpt", setup=lambda tmp: (tmp / "dir.ckpt").mkdir()
    ),
    "`--checkpoint-dir` where no checkpoint loads": serve_with(
        "--checkpoint-dir", "TMP", setup=lambda tmp: (tmp / "bad.ckpt").write_bytes(b"x" * 99)
    ),
    "`--port 70000`": serve_with("--checkpoint", "TMP/none.ckpt", "--port", "70000"),
    "`--max-batch 0`": serve_with("--checkpoint", "TMP/none.ckpt", "--max-batch", "0"),
    "`--batch-wait-ms nan`": serve_with("--checkpoint", "TMP/none.ckpt", "--batch-wait-ms", "nan"),
    "`--max-upload-mb 0`": serve_with("--checkpoint", "TMP/none.ckpt", "--max-upload-mb", "0"),
    "`--top-cells 0`": serve_with("--checkpoint", "TMP/none.ckpt", "--top-cells", "0"),
    "`--allow-host` that is not a host name": serve_with(
        "--checkpoint", "TMP/none.ckpt", "--allow-host", "a/b"
    ),
    "`--allow-origin` with a path": serve_with(
        "--checkpoint", "TMP/none.ckpt", "--allow-origin", "http://lab.example/page"
    ),
    "`--out` a dataset the downloader did not make": download(into_dataset=True),
    "`--concurrency 0`": download("--concurrency", "0"),
    "`--retries -1`": download("--retries", "-1"),
    "`--rate 0`": download("--rate", "0"),
    "`--timeout 0`": download("--timeout", "0"),
    "a rejected key": download(setup=lambda s: setattr(s, "metadata_status", "REQUEST_DENIED")),
    "an exhausted quota (429)": download(setup=lambda s: setattr(s, "always_429", True)),
    "a dead network": download(setup=lambda s: s.stop()),
    "a silent server, `--timeout 0.5`": download(
        "--timeout", "0.5", setup=lambda s: s.held.update({"metadata", "image"})
    ),
    "a malformed answer": download(setup=lambda s: setattr(s, "metadata_body", b"<html>")),
}


def test_the_table_lists_exactly_the_cases_tested():
    assert list(page_rows()) == list(CASES)


@pytest.fixture
def server():
    fake = FakeStreetView()
    fake.base_url = fake.start()
    yield fake
    if fake.loop.is_running():
        fake.stop()


@pytest.mark.parametrize("case", CASES)
def test_each_bad_input_gets_what_the_page_says(case, tmp_path, server, capsys):
    status, message = page_rows()[case]
    ds = make_dataset(tmp_path / "ds")
    with pytest.MonkeyPatch.context() as monkeypatch:
        argv = CASES[case](ds, tmp_path, server, monkeypatch)
        before = tree_bytes(ds)
        code = main(argv)
        after = tree_bytes(ds)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == status, output
    assert message in output, output
    assert "Traceback" not in output and after == before
    if status == 2:
        said = [line for line in captured.err.splitlines() if message in line]
        assert said and re.match(r"(geoguesser \S+: )?\S", said[0])
