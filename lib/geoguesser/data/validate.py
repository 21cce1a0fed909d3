"""Validating datasets in the LUMEN layout and merging them into one table of locations.

Validation collects every problem instead of stopping at the first, so that a broken
16,000-location dataset is fixed in one pass, and it never raises on what it is given:
whatever a file holds (any bytes, any size it declares) becomes a problem with its place.
Nothing here writes into a dataset directory.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from shapely.geometry.base import BaseGeometry
from tqdm.auto import tqdm

from geoguesser.data.layout import (
    CSV_NAME,
    MAX_IMAGE_PX,
    REQUIRED_COLUMNS,
    SAFE_UUID,
    VIEWS,
    check_image,
    images_root,
    is_synthetic,
    parse_coordinates,
    read_csv_columns,
    view_paths,
)
from geoguesser.errors import UserError, is_utf8_name, printable
from geoguesser.geo.borders import inside

COLUMNS = ["uuid", "latitude", "longitude", "dataset_dir"]
UNLABELLED = "usable for predict only"


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
            usable = _labelled_locations(dataset_dir, root, folders, border, seen, report)
        else:
            usable = _unlabelled_locations(dataset_dir, root, folders, labelled, seen, report)
        if usable is None:
            continue
        image_paths += [path for uuid in usable.uuid for path in view_paths(dataset_dir, uuid)]
        frames.append(usable.assign(dataset_dir=str(dataset_dir.resolve()))[COLUMNS])
    if check_images:
        _check_images(image_paths, report, max_px=max_px, deep=deep, progress=progress)
    if frames:
        report.locations = pd.concat(frames, ignore_index=True)
    return report


def _claim_uuid(uuid: str, where: str, seen: dict[str, str], report: Report) -> None:
    """Remember where a uuid was first seen; a second sighting, in any dataset, is a problem.

    Locations of all the datasets merge into one table keyed by uuid, so a uuid given twice
    (in one CSV, in two datasets, or as two unlabelled folders) would mean two places.
    """
    if uuid in seen:
        report.problems.append(
            Problem(where, f"uuid {uuid} is listed twice (first at {seen[uuid]})")
        )
    else:
        seen[uuid] = where


def _labelled_locations(
    dataset_dir: Path,
    root: Path,
    folders: set[str],
    border: BaseGeometry | None,
    seen: dict[str, str],
    report: Report,
) -> pd.DataFrame | None:
    """The rows of a dataset's data.csv that have a folder; every mismatch is a problem."""
    csv_path = dataset_dir / CSV_NAME
    if not root.is_dir():
        report.problems.append(Problem(str(root), "images folder not found"))
    frame = _read_csv(dataset_dir, report.problems)
    if frame is None:
        return None
    frame = _check_rows(frame, csv_path, border, report)
    listed = set(frame.uuid)
    for uuid, line in frame[["uuid", "line"]].itertuples(index=False):
        _claim_uuid(uuid, f"{csv_path}:{line}", seen, report)
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
        report.problems.append(Problem(str(root / extra), f"folder has no row in {csv_path}"))
    return frame[frame.uuid.isin(folders)]


def _unlabelled_locations(
    dataset_dir: Path,
    root: Path,
    folders: set[str],
    labelled: bool | None,
    seen: dict[str, str],
    report: Report,
) -> pd.DataFrame | None:
    """The location folders of a dataset without data.csv, when unlabelled data is welcome."""
    if labelled:
        report.problems.append(
            Problem(
                str(dataset_dir),
                f"unlabelled (no {CSV_NAME}): {UNLABELLED}, not for training",
            )
        )
        return None
    if not folders:
        report.problems.append(
            Problem(str(dataset_dir), f"neither {CSV_NAME} nor location folders found")
        )
        return None
    names = sorted(name for name in folders if is_utf8_name(name))
    for name in sorted(folders - set(names)):
        report.problems.append(
            Problem(
                str(root / name),
                "folder name is not valid UTF-8; rename it (it is the uuid of the CSV)",
            )
        )
    for uuid in names:
        _claim_uuid(uuid, str(root / uuid), seen, report)
    report.unlabelled += len(names)
    return pd.DataFrame({"uuid": names, "latitude": np.nan, "longitude": np.nan})


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
