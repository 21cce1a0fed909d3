"""The LUMEN competition layout: its names, its paths, and reading its CSV and its images.

A labelled dataset is `DIR/data.csv` (columns uuid, latitude, longitude; others, such as
the unnamed index column of the real files, are ignored) and `DIR/images/<uuid>/{0,90,180,270}.jpg`,
the views looking north, east, south and west. An unlabelled dataset (for prediction) has
the uuid folders without a CSV, either under `DIR/images/` or directly in `DIR`.

Whatever a file holds (any bytes, any size it declares), the readers here answer what is
wrong with it instead of raising, so that validation (`geoguesser.data.validate`) can turn
it into a problem with its place. Nothing here writes into a dataset directory.

The coordinate parser and the image check here are the only ones: the downloader uses them
too, so a value or a file means the same to every command.
"""

from __future__ import annotations

import io
import re
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from geoguesser.data.images import IMAGE_FORMATS, open_image

VIEWS = (0, 90, 180, 270)  # headings in degrees: north, east, south, west
CSV_NAME = "data.csv"
SYNTHETIC_MARKER = "SYNTHETIC.txt"
REQUIRED_COLUMNS = ("uuid", "latitude", "longitude")
SAFE_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Street View serves at most 640 px (2048 with a premium plan); a header declaring more than
# this is refused before anything decodes it (a decompression bomb, or a forged header).
MAX_IMAGE_PX = 4096
NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
NOT_AN_IMAGE = " or ".join([", ".join(IMAGE_FORMATS[:-1]), IMAGE_FORMATS[-1]])  # JPEG, PNG or WEBP


def images_root(dataset_dir: str | Path) -> Path:
    """Where the uuid folders are: `DIR/images` in the competition layout, else `DIR` itself."""
    dataset_dir = Path(dataset_dir)
    images = dataset_dir / "images"
    return images if images.is_dir() or (dataset_dir / CSV_NAME).exists() else dataset_dir


def view_paths(dataset_dir: str | Path, uuid: str) -> list[Path]:
    """The four view files of one location, in the fixed order N, E, S, W."""
    folder = images_root(dataset_dir) / uuid
    return [folder / f"{heading}.jpg" for heading in VIEWS]


def is_synthetic(dataset_dir: str | Path) -> bool:
    return (Path(dataset_dir) / SYNTHETIC_MARKER).exists()


def check_image(source: Path | bytes, max_px: int = MAX_IMAGE_PX, deep: bool = False) -> str | None:
    """None when a view (a file, or downloaded bytes) is a readable, complete image; else why not.

    The fast check reads the header and the last bytes: the declared size must be within
    `max_px` a side, and a JPEG must end with its end-of-image marker (a truncated download
    keeps a valid header). `deep` decodes every pixel too, and catches a header that
    promises more pixels than the data holds: libjpeg fills the missing blocks with flat
    grey (128) instead of failing, so a grey bottom-right block is the sign.
    """
    try:
        if isinstance(source, bytes):
            handle, size = io.BytesIO(source), len(source)
        else:
            info = source.stat()
            if not stat.S_ISREG(info.st_mode):  # a folder, or a FIFO that would block a read
                return "not a regular file"
            handle, size = open(source, "rb"), info.st_size  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc.__class__.__name__})"
    with handle:
        try:
            return _image_problem(handle, size, max_px, deep)
        except Image.DecompressionBombError:
            return "declares more pixels than PIL opens (a decompression bomb?)"
        except UnidentifiedImageError:
            return f"unreadable (not a {NOT_AN_IMAGE} image)"
        except Exception as exc:  # PIL's plugins raise many types on bad bytes: all are data
            text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            return f"unreadable ({text[:200]})"


def _image_problem(handle, size: int, max_px: int, deep: bool) -> str | None:
    with open_image(handle) as image:
        width, height = image.size
        if max(width, height) > max_px:
            return (
                f"declares {width} x {height} pixels, over the limit of {max_px} px a side"
                " (--max-image-px)"
            )
        fmt = image.format
        if deep:
            image.load()
            if _grey_filled(image):
                return (
                    f"pixels do not match the header: the data stops short of {width} x {height}"
                    " (the rest decodes as flat grey)"
                )
    if fmt == "JPEG":
        handle.seek(max(0, size - 64))
        if b"\xff\xd9" not in handle.read():
            return "unreadable (truncated JPEG: no end-of-image marker)"
    return None


def _grey_filled(image: Image.Image) -> bool:
    """Whether the last 8 x 8 block decoded as the all-zero block libjpeg puts in for no data."""
    if image.format != "JPEG" or image.mode not in ("L", "RGB") or min(image.size) < 8:
        return False
    width, height = image.size
    corner = np.asarray(image.crop((width - 8, height - 8, width, height)))
    return bool((corner == 128).all())


def parse_number(text: str) -> float | None:
    """A plain decimal number ('45.81', '-1e-3'); None for anything else, NaN and inf included."""
    if not isinstance(text, str) or not NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if abs(value) < float("inf") else None


def parse_coordinates(
    lat_text: str, lon_text: str
) -> tuple[float | None, float | None, str | None]:
    """(latitude, longitude, None) from CSV text, or (None, None, what is wrong) in one line.

    The one coordinate parser of the project: datasets and the downloader's points agree on
    what a coordinate is (a finite decimal number, |latitude| <= 90, |longitude| <= 180).
    """
    values, problems = [], []
    for name, text in (("latitude", lat_text), ("longitude", lon_text)):
        value = parse_number(text)
        if not str(text).strip():
            problems.append(f"{name} is missing")
        elif value is None:
            problems.append(f"{name} {text!r} is not a number")
        values.append(value)
    lat, lon = values
    if not problems and (abs(lat) > 90 or abs(lon) > 180):
        problems.append(f"coordinates ({lat}, {lon}) are out of range")
    if problems:
        return None, None, "; ".join(problems)
    return lat, lon, None


def read_csv_columns(path: Path, required: Sequence[str]) -> tuple[pd.DataFrame | None, str | None]:
    """The text of a CSV file's columns (every cell a str), or None and what is wrong with it.

    Never raises on what the file holds: a folder or unreadable file in its place, bytes
    that are not UTF-8 (a BOM is fine), rows that do not parse, a required column missing
    or given twice are each one problem. Shared by datasets and the downloader's points.
    """
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return None, "is a folder, not a CSV file" if path.is_dir() else "not a regular file"
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "not found"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc.__class__.__name__})"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        return None, f"not a readable CSV ({str(exc).splitlines()[0] if str(exc) else exc})"
    names = [str(c).strip() for c in raw.columns]
    bases = [re.sub(r"\.\d+$", "", n) for n in names]  # pandas renames a second 'uuid' 'uuid.1'
    twice = [c for c in required if bases.count(c) > 1]
    if twice:
        return None, f"column(s) {', '.join(twice)} given more than once"
    missing = [c for c in required if c not in names]
    if missing:
        hint = next((f" (separated by {sep!r}?)" for sep in ";\t|" if sep in "".join(names)), "")
        return None, f"missing column(s) {', '.join(missing)}{hint}"
    raw.columns = names
    return raw[list(required)].fillna("").astype(str), None
