"""Reading, validating and merging datasets in the LUMEN competition layout.

A labelled dataset is `DIR/data.csv` (columns uuid, latitude, longitude; others, such as
the unnamed index column of the real files, are ignored) and `DIR/images/<uuid>/{0,90,180,270}.jpg`,
the views looking north, east, south and west. An unlabelled dataset (for prediction) has
the uuid folders without a CSV, either under `DIR/images/` or directly in `DIR`.

Validation collects every problem instead of stopping at the first, so that a broken
16,000-location dataset is fixed in one pass. Nothing here writes into a dataset directory.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from shapely.geometry.base import BaseGeometry

from .borders import inside
from .errors import UserError

VIEWS = (0, 90, 180, 270)  # headings in degrees: north, east, south, west
CSV_NAME = "data.csv"
SYNTHETIC_MARKER = "SYNTHETIC.txt"
REQUIRED_COLUMNS = ("uuid", "latitude", "longitude")
SAFE_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
COLUMNS = ["uuid", "latitude", "longitude", "dataset_dir"]


@dataclass(frozen=True)
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Report:
    """What validation found: the readable locations, the problems and the warnings."""

    locations: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    synthetic: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        frame = self.locations
        n_dirs = frame["dataset_dir"].nunique()
        text = f"{len(frame)} locations ({len(frame) * len(VIEWS)} images) in {n_dirs} dataset(s)"
        if self.synthetic:
            text += " [SYNTHETIC data]"
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


def check_image(path: Path) -> str | None:
    """None when the file is a readable, complete image; else what is wrong with it."""
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 - parsing the header is the check
            fmt = image.format
    except FileNotFoundError:
        return "missing"
    except (UnidentifiedImageError, OSError) as exc:
        return f"unreadable ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})"
    if fmt == "JPEG":
        # A truncated download still has a valid header; a complete JPEG ends with EOI.
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64))
            if b"\xff\xd9" not in handle.read():
                return "unreadable (truncated JPEG: no end-of-image marker)"
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _read_csv(dataset_dir: Path, problems: list[Problem]) -> pd.DataFrame | None:
    csv_path = dataset_dir / CSV_NAME
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(csv_path), f"not a readable CSV ({exc})".splitlines()[0]))
        return None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        problems.append(Problem(str(csv_path), f"missing column(s) {', '.join(missing)}"))
        return None
    frame = raw[list(REQUIRED_COLUMNS)].copy()
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
        lat, lon = _number(lat_text), _number(lon_text)
        for name, text, value in (("latitude", lat_text, lat), ("longitude", lon_text, lon)):
            if not text.strip():
                report.problems.append(Problem(where, f"{name} is missing"))
            elif value is None:
                report.problems.append(Problem(where, f"{name} {text!r} is not a number"))
        if lat is not None and lon is not None and (abs(lat) > 90 or abs(lon) > 180):
            report.problems.append(Problem(where, f"coordinates ({lat}, {lon}) are out of range"))
            lat = lon = None
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


def _folders(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    with os.scandir(root) as entries:
        return {entry.name for entry in entries if entry.is_dir()}


def _check_images(paths: list[Path], report: Report, workers: int = 8) -> None:
    """Check every view file; threads because this is file-system latency, not CPU."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, error in zip(paths, pool.map(check_image, paths, chunksize=64), strict=True):
            if error:
                report.problems.append(Problem(str(path), error))


def validate(
    dataset_dirs: Sequence[str | Path],
    border: BaseGeometry | None = None,
    labelled: bool | None = None,
    check_images: bool = True,
) -> Report:
    """Check datasets and merge them into one table that remembers each location's directory.

    `labelled=None` accepts both layouts (a directory without data.csv is unlabelled);
    True requires data.csv everywhere, as training does.
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
        folders = _folders(root)
        if csv_path.exists():
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
                    Problem(str(csv_path), "missing (training needs labelled data)")
                )
                continue
            if not folders:
                report.problems.append(
                    Problem(str(dataset_dir), f"neither {CSV_NAME} nor location folders found")
                )
                continue
            names = sorted(folders)
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
        image_paths += [path for uuid in usable.uuid for path in view_paths(dataset_dir, uuid)]
        frames.append(usable.assign(dataset_dir=str(dataset_dir.resolve()))[COLUMNS])
    if check_images:
        _check_images(image_paths, report)
    if frames:
        report.locations = pd.concat(frames, ignore_index=True)
    return report


def check_views(table: pd.DataFrame, workers: int = 8) -> list[Problem]:
    """Missing or unreadable views of the locations in a table (uuid, dataset_dir).

    Run before training so that a broken file is named now, not in epoch 7.
    """
    report = Report(locations=table)
    paths = [
        path
        for uuid, d in zip(table.uuid, table.dataset_dir, strict=True)
        for path in view_paths(d, uuid)
    ]
    _check_images(paths, report, workers)
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
