"""Property-based fuzzing of everything that reads a user's files (hypothesis).

Random CSV text and bytes (encodings, BOM, line endings, quoting, separators, duplicate or
missing headers, huge, NaN and infinite numbers) and random image bytes go through
`validate`, the dataset loader and `predict`'s input checks. Whatever they hold: no
traceback, exit status 0 or 2 (a UserError in the library), and the dataset directory
byte-identical afterwards. Derandomized (the same cases on every run) and bounded, so the
whole file takes seconds.
"""

from __future__ import annotations

import contextlib
import csv
import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoguesser.cli import main
from geoguesser.data.layout import check_image
from geoguesser.data.validate import load_locations
from geoguesser.errors import UserError
from geoguesser.inference.predict import check_inputs
from helpers.datasets import CROATIAN_POINTS, make_dataset
from helpers.images import jpeg_bytes
from helpers.snapshots import tree_bytes

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow],
)

CELLS = st.one_of(
    st.sampled_from(
        [
            "loc-0000",
            "loc-0001",
            "45.8150",
            "15.9819",
            "43.52",
            "16.47",
            "",
            " ",
            "nan",
            "NaN",
            "inf",
            "-Infinity",
            "1e400",
            "-1e-400",
            "9" * 400,
            "45,81",
            " 45.8 ",
            "0x1p4",
            "4_5",
            "١٢٫٥",
            "../etc",
            ".",
            "..",
            "loc-0000/..",
            '"',
            "'",
            "a\nb",
            "\x00",
            "\ufeff45.8",
        ]
    ),  # fmt: skip
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
HEADER = st.lists(
    st.sampled_from(
        ["uuid", "latitude", "longitude", "", "Unnamed: 0", "lat", "UUID", " uuid", "latitude.1"]
    ),
    max_size=6,
)


@st.composite
def csv_files(draw) -> bytes:
    """CSV files as a person, a spreadsheet or a broken script might write them."""
    header = draw(st.one_of(HEADER, st.just(["", "uuid", "latitude", "longitude"])))
    width = len(header) or 3
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=width + 1), max_size=6))
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quoting = draw(
        st.sampled_from(["none", csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
    )
    if quoting == "none":  # joined by hand: separators and quotes inside cells left as they are
        text = "".join(sep.join(row) + end for row in [header, *rows])
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=sep, lineterminator=end, quoting=quoting)
        writer.writerow(header)
        writer.writerows(rows)
        text = buffer.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1250"]))
    return text.encode(encoding, errors="replace")


def declare(data: bytes, width: int, height: int) -> bytes:
    data, i = bytearray(data), 2
    while i + 9 < len(data) and data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


JPEG = jpeg_bytes(32, seed=5)


@st.composite
def image_files(draw) -> bytes:
    """Random bytes, and real JPEGs cut short, with flipped bytes, forged sizes or a tail."""
    kind = draw(st.sampled_from(["random", "cut", "flipped", "forged size", "tail"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "cut":
        return JPEG[: draw(st.integers(0, len(JPEG)))]
    if kind == "forged size":
        side = st.integers(0, 65535)
        return declare(JPEG, draw(side), draw(side))
    if kind == "tail":
        return JPEG + draw(st.binary(max_size=64))
    data = bytearray(JPEG)
    for position in draw(st.lists(st.integers(0, len(JPEG) - 1), min_size=1, max_size=8)):
        data[position] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One small dataset whose data.csv or first view each example replaces."""
    root = make_dataset(tmp_path_factory.mktemp("fuzz") / "ds", CROATIAN_POINTS[:2])
    (root.parent / "good.csv").write_bytes((root / "data.csv").read_bytes())
    return root


def run_quietly(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def everything_reads(folder: Path, out: Path) -> None:
    """validate (CLI), the training loader and predict's checks: 0 or 2, never a traceback."""
    before = tree_bytes(folder)
    assert run_quietly(["validate", str(folder)]) in (0, 2)
    for load in (
        lambda: load_locations([folder], labelled=True),
        lambda: check_inputs([folder], out),
    ):
        with contextlib.suppress(UserError):
            load()
    assert tree_bytes(folder) == before
    assert not out.exists()


@FUZZ
@given(data=csv_files())
def test_any_csv_text_is_read_or_refused(folder, data):
    (folder / "data.csv").write_bytes(data)
    everything_reads(folder, folder.parent / "preds.csv")


@FUZZ
@given(data=st.binary(max_size=512))
def test_any_csv_bytes_are_read_or_refused(folder, data):
    (folder / "data.csv").write_bytes(data)
    everything_reads(folder, folder.parent / "preds.csv")


@FUZZ
@given(data=image_files())
def test_any_image_bytes_are_read_or_refused(folder, data):
    (folder / "data.csv").write_bytes((folder.parent / "good.csv").read_bytes())
    (folder / "images/loc-0000/0.jpg").write_bytes(data)
    everything_reads(folder, folder.parent / "preds.csv")
    assert isinstance(check_image(data, deep=True), str | None)
