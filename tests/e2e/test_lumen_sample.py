"""The real competition format, on the 100-location public sample when it is present.

Broken copies are made in a temporary folder; the sample itself is never touched.
"""

import shutil

import pandas as pd
import pytest

from geoguesser.cli import main
from geoguesser.data.validate import validate
from geoguesser.geo.borders import load_border
from helpers.paths import LUMEN_SAMPLE
from helpers.snapshots import tree_snapshot

pytestmark = pytest.mark.skipif(
    not LUMEN_SAMPLE.exists(), reason="shared/data/lumen-sample is not here"
)


def test_real_sample_validates_and_is_not_modified(capsys):
    before = tree_snapshot(LUMEN_SAMPLE)
    assert main(["validate", str(LUMEN_SAMPLE)]) == 0
    assert capsys.readouterr().out.startswith("ok: 100 locations (400 images)")
    assert tree_snapshot(LUMEN_SAMPLE) == before


@pytest.fixture
def broken_copy(tmp_path):
    """A copy of 12 real locations, to break in every listed way at once."""
    frame = pd.read_csv(LUMEN_SAMPLE / "data.csv", index_col=0).iloc[:12]
    root = tmp_path / "sample"
    for uuid in frame.uuid:
        shutil.copytree(LUMEN_SAMPLE / "images" / uuid, root / "images" / uuid)
    return root, frame


def test_broken_copies_name_each_problem(broken_copy, capsys):
    root, frame = broken_copy
    u = frame.uuid.tolist()
    (root / "images" / u[0] / "90.jpg").unlink()
    jpeg = (root / "images" / u[1] / "0.jpg").read_bytes()
    (root / "images" / u[1] / "0.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    frame = frame.astype({"latitude": object, "longitude": object})
    frame.iloc[2, frame.columns.get_loc("latitude")] = ""
    frame.iloc[3, frame.columns.get_loc("longitude")] = "east"
    frame.iloc[4, frame.columns.get_loc("latitude")] = 99.0
    lat, lon = frame.iloc[5][["latitude", "longitude"]]
    (
        frame.iloc[5, frame.columns.get_loc("latitude")],
        frame.iloc[5, frame.columns.get_loc("longitude")],
    ) = lon, lat
    frame.iloc[6, frame.columns.get_loc("uuid")] = u[7]
    frame.iloc[8, frame.columns.get_loc("uuid")] = "../../etc"
    shutil.rmtree(root / "images" / u[9])
    shutil.copytree(root / "images" / u[10], root / "images" / "stray-folder")
    frame.to_csv(root / "data.csv")

    assert main(["validate", str(root)]) == 2
    err = capsys.readouterr().err
    for expected in [
        f"{u[0]}/90.jpg: missing",
        f"{u[1]}/0.jpg: unreadable (truncated JPEG",
        "data.csv:4: latitude is missing",
        "data.csv:5: longitude 'east' is not a number",
        "data.csv:6: coordinates (99.0",
        "data.csv:7: latitude and longitude look swapped",
        f"data.csv:9: uuid {u[7]} is listed twice",
        "data.csv:10: uuid '../../etc' is not a safe folder name",
        f"data.csv:11: uuid {u[9]} has no folder",
        "images/stray-folder: folder has no row",
    ]:
        assert expected in err, f"{expected!r} not in:\n{err}"
    assert "Traceback" not in err


def test_a_second_copy_duplicates_across_directories(broken_copy):
    root, frame = broken_copy
    frame.to_csv(root / "data.csv")
    report = validate([LUMEN_SAMPLE, root], border=load_border())
    assert sum("is listed twice" in str(p) for p in report.problems) == 12
