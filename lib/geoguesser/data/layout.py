"""Reading, validating and merging datasets in the LUMEN competition layout.

A labelled dataset is `DIR/data.csv` (columns uuid, latitude, longitude; others, such as
the unnamed index column of the real files, are ignored) and `DIR/images/<uuid>/{0,90,180,270}.jpg`,
the views looking north, east, south and west. An unlabelled dataset (for prediction) has
the uuid folders without a CSV, either under `DIR/images/` or directly in `DIR`.

Validation collects every problem instead of stopping at the first, so that a broken
16,000-location dataset is fixed in one pass, and it never raises on what it is given:
whatever a file holds (any bytes, any size it declares) becomes a problem with its place.
Nothing here writes into a dataset directory.

The coordinate parser and the image check here are the only ones: the downloader uses them
too, so a value or a file means the same to every command.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from shapely.geometry.base import BaseGeometry
from tqdm.auto import tqdm

from geoguesser.data.images import IMAGE_FORMATS, open_image
from geoguesser.errors import UserError, is_utf8_name, printable
from geoguesser.geo.borders import inside

VIEWS = (0, 90, 180, 270)  # headings in degrees: north, east, south, west
CSV_NAME = "data.csv"
SYNTHETIC_MARKER = "SYNTHETIC.txt"
REQUIRED_COLUMNS = ("uuid", "latitude", "longitude")
SAFE_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
COLUMNS = ["uuid", "latitude", "longitude", "dataset_dir"]
# Street View serves at most 640 px (2048 with a premium plan); a header declaring more than
# this is refused before anything decodes it (a decompression bomb, or a forged header).
MAX_IMAGE_PX = 4096
NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
UNLABELLED = "usable for predict only"
NOT_AN_IMAGE = " or ".join([", ".join(IMAGE_FORMATS[:-1]), IMAGE_FORMATS[-1]])  # JPEG, PNG or WEBP


@dataclass(frozen=True)
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return printable(f"{self.where}: {self.what}")  # a folder's name may not be UTF-8


@dataclass
class Report:
    """What validation found: the readable locations, the problems and the warnings."""

    locations: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    synthetic: bool = False
    unlabelled: int = 0  # locations from directories without data.csv

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        frame = self.locations
        n_dirs = frame["dataset_dir"].nunique()
        text = f"{len(frame)} locations ({len(frame) * len(VIEWS)} images) in {n_dirs} dataset(s)"
        if self.synthetic:
            text += " [SYNTHETIC data]"
        if self.unlabelled:
            text += f"; unlabelled: {self.unlabelled} locations, {UNLABELLED}"
        labelled = frame.dropna(subset=["latitude", "longitude"])
        if len(labelled):
            text += (
                f"; latitude {labelled.latitude.min():.3f}..{labelled.latitude.max():.3f}"
                f", longitude {labelled.longitude.min():.3f}..{labelled.longitude.max():.3f}"
            )
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s)"
        return text


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


def _read_csv(dataset_dir: Path, problems: list[Problem]) -> pd.DataFrame | None:
    csv_path = dataset_dir / CSV_NAME
    frame, problem = read_csv_columns(csv_path, REQUIRED_COLUMNS)
    if problem:
        problems.append(Problem(str(csv_path), problem))
        return None
    frame["line"] = np.arange(len(frame)) + 2  # header is line 1
    return frame


def _check_rows(
    frame: pd.DataFrame, csv_path: Path, border: BaseGeometry | None, report: Report
) -> pd.DataFrame:
    """Parse coordinates and flag bad rows; returns the rows with their parsed values."""
    lats, lons = [], []
    for uuid, lat_text, lon_text, line in frame[
        ["uuid", "latitude", "longitude", "line"]
    ].itertuples(index=False):
        where = f"{csv_path}:{line}"
        if not uuid:
            report.problems.append(Problem(where, "empty uuid"))
        elif not SAFE_UUID.fullmatch(uuid) or ".." in uuid:
            report.problems.append(Problem(where, f"uuid {uuid!r} is not a safe folder name"))
        lat, lon, problem = parse_coordinates(lat_text, lon_text)
        if problem:
            report.problems.append(Problem(where, problem))
        lats.append(np.nan if lat is None else lat)
        lons.append(np.nan if lon is None else lon)
    frame = frame.assign(
        latitude=np.array(lats, dtype=float), longitude=np.array(lons, dtype=float)
    )
    if border is not None:
        _check_against_border(frame, csv_path, border, report)
    return frame


def _check_against_border(
    frame: pd.DataFrame, csv_path: Path, border: BaseGeometry, report: Report
) -> None:
    valid = frame.latitude.notna() & frame.longitude.notna()
    lat, lon = frame.latitude.to_numpy(), frame.longitude.to_numpy()
    is_in = np.zeros(len(frame), dtype=bool)
    is_in[valid] = inside(border, lat[valid], lon[valid])
    swapped_in = np.zeros(len(frame), dtype=bool)
    candidates = valid & ~is_in & (np.abs(lon) <= 90)
    swapped_in[candidates] = inside(border, lon[candidates], lat[candidates])
    for i in np.flatnonzero(valid & ~is_in):
        where = f"{csv_path}:{frame.line.iat[i]}"
        if swapped_in[i]:
            report.problems.append(
                Problem(
                    where,
                    f"latitude and longitude look swapped ({lat[i]}, {lon[i]}):"
                    " swapped, the point is inside the border",
                )
            )
        else:
            report.warnings.append(
                Problem(
                    where,
                    f"({lat[i]:.5f}, {lon[i]:.5f}) is outside the border;"
                    " kept, it goes to the nearest cell",
                )
            )


def _folders(root: Path, problems: list[Problem]) -> set[str]:
    try:
        if not root.is_dir():
            return set()
        with os.scandir(root) as entries:
            return {entry.name for entry in entries if entry.is_dir()}
    except OSError as exc:
        problems.append(Problem(str(root), f"cannot be listed ({exc.strerror or exc})"))
        return set()


def _check_images(
    paths: list[Path],
    report: Report,
    workers: int | None = None,
    max_px: int = MAX_IMAGE_PX,
    deep: bool = False,
    progress: bool = False,
) -> None:
    """Check every view file.

    The fast check reads headers: threads, because that is file-system latency. `deep`
    decodes every pixel: processes, one per core, because that is CPU work.
    """
    check = partial(check_image, max_px=max_px, deep=deep)
    if deep:
        pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count())
    else:
        pool = ThreadPoolExecutor(max_workers=workers or 8)
    with pool, warnings.catch_warnings():
        # Sizes are judged against max_px here; PIL's own warning would only add noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        results = pool.map(check, paths, chunksize=64 if not deep else 16)
        bar = tqdm(results, total=len(paths), desc="decoding", unit="image", disable=not progress)
        for path, error in zip(paths, bar, strict=True):
            if error:
                report.problems.append(Problem(str(path), error))


def validate(
    dataset_dirs: Sequence[str | Path],
    border: BaseGeometry | None = None,
    labelled: bool | None = None,
    check_images: bool = True,
    max_px: int = MAX_IMAGE_PX,
    deep: bool = False,
    progress: bool = False,
) -> Report:
    """Check datasets and merge them into one table that remembers each location's directory.

    `labelled=None` accepts both layouts (a directory without data.csv is unlabelled);
    True requires data.csv everywhere, as training does. `deep` decodes every image on
    every core (minutes for 16,000 locations) instead of reading headers (seconds).
    """
    report = Report(locations=pd.DataFrame(columns=COLUMNS))
    if not dataset_dirs:
        raise UserError("no dataset directory given")
    frames, seen, image_paths = [], {}, []
    for dataset_dir in map(Path, dataset_dirs):
        if not dataset_dir.is_dir():
            report.problems.append(Problem(str(dataset_dir), "dataset directory not found"))
            continue
        report.synthetic |= is_synthetic(dataset_dir)
        csv_path = dataset_dir / CSV_NAME
        root = images_root(dataset_dir)
        folders = _folders(root, report.problems)
        if csv_path.exists() or csv_path.is_symlink():
            if not root.is_dir():
                report.problems.append(Problem(str(root), "images folder not found"))
            frame = _read_csv(dataset_dir, report.problems)
            if frame is None:
                continue
            frame = _check_rows(frame, csv_path, border, report)
            listed = set(frame.uuid)
            for uuid, line in frame[["uuid", "line"]].itertuples(index=False):
                if uuid in seen:
                    report.problems.append(
                        Problem(
                            f"{csv_path}:{line}",
                            f"uuid {uuid} is listed twice (first at {seen[uuid]})",
                        )
                    )
                else:
                    seen[uuid] = f"{csv_path}:{line}"
                if (
                    uuid
                    and SAFE_UUID.fullmatch(uuid)
                    and ".." not in uuid
                    and uuid not in folders
                    and root.is_dir()
                ):
                    report.problems.append(
                        Problem(f"{csv_path}:{line}", f"uuid {uuid} has no folder {root / uuid}")
                    )
            for extra in sorted(folders - listed):
                report.problems.append(
                    Problem(str(root / extra), f"folder has no row in {csv_path}")
                )
            usable = frame[frame.uuid.isin(folders)]
        else:
            if labelled:
                report.problems.append(
                    Problem(
                        str(dataset_dir),
                        f"unlabelled (no {CSV_NAME}): {UNLABELLED}, not for training",
                    )
                )
                continue
            if not folders:
                report.problems.append(
                    Problem(str(dataset_dir), f"neither {CSV_NAME} nor location folders found")
                )
                continue
            names = sorted(name for name in folders if is_utf8_name(name))
            for name in sorted(folders - set(names)):
                report.problems.append(
                    Problem(
                        str(root / name),
                        "folder name is not valid UTF-8; rename it (it is the uuid of the CSV)",
                    )
                )
            for uuid in names:
                if uuid in seen:
                    report.problems.append(
                        Problem(
                            str(root / uuid), f"uuid {uuid} is listed twice (first at {seen[uuid]})"
                        )
                    )
                else:
                    seen[uuid] = str(root / uuid)
            usable = pd.DataFrame({"uuid": names, "latitude": np.nan, "longitude": np.nan})
            report.unlabelled += len(usable)
        image_paths += [path for uuid in usable.uuid for path in view_paths(dataset_dir, uuid)]
        frames.append(usable.assign(dataset_dir=str(dataset_dir.resolve()))[COLUMNS])
    if check_images:
        _check_images(image_paths, report, max_px=max_px, deep=deep, progress=progress)
    if frames:
        report.locations = pd.concat(frames, ignore_index=True)
    return report


def check_views(table: pd.DataFrame, workers: int | None = None) -> list[Problem]:
    """Missing or unreadable views of the locations in a table (uuid, dataset_dir).

    Run before training so that a broken file is named now, not in epoch 7.
    """
    report = Report(locations=table)
    paths = [
        path
        for uuid, d in zip(table.uuid, table.dataset_dir, strict=True)
        for path in view_paths(d, uuid)
    ]
    _check_images(paths, report, workers=workers)
    return report.problems


def load_locations(
    dataset_dirs: Iterable[str | Path],
    border: BaseGeometry | None = None,
    labelled: bool = True,
    check_images: bool = True,
) -> tuple[pd.DataFrame, list[Problem]]:
    """Validated locations of one or more datasets, or a UserError listing every problem.

    Returns the table and the warnings (locations outside the border, which are kept).
    """
    report = validate(
        list(dataset_dirs), border=border, labelled=labelled, check_images=check_images
    )
    if not report.ok:
        raise UserError("\n".join(map(str, report.problems)))
    return report.locations, report.warnings
