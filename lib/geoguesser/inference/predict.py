"""From photographs to coordinates: batched inference with a model or a checkpoint file.

Locations come as dataset folders (four views each), or as a folder of single photographs
(`predict_photos`), each placed on its own, for models whose fusion answers from one view.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from geoguesser.atomic import write_csv
from geoguesser.config import TOP_CELLS
from geoguesser.data.image_cache import decode_view
from geoguesser.data.images import IMAGE_FORMATS
from geoguesser.data.layout import MAX_IMAGE_PX, check_image
from geoguesser.data.validate import validate
from geoguesser.data.views import LocationDataset
from geoguesser.errors import UserError, is_utf8_name, printable
from geoguesser.geo.coords import haversine_km
from geoguesser.model.checkpoint import load_checkpoint
from geoguesser.model.fusion import concat_refusal
from geoguesser.model.locator import GeoLocator
from geoguesser.progress import progress as progress_of

# The competition's columns, and the confidence --with-confidence adds: what predict writes,
# and so what it recognizes as its own when --out already exists.
PREDICTION_COLUMNS = ("uuid", "latitude", "longitude")
CONFIDENCE_COLUMN = "expected_error_km"
PREDICTION_HEADERS = (
    ",".join(PREDICTION_COLUMNS),
    ",".join((*PREDICTION_COLUMNS, CONFIDENCE_COLUMN)),
)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(name: str | None) -> torch.device:
    """The device to predict on: the best available, or `name` if this machine has it.

    Checked before anything loads, so that `--device cuda:7` on a one-GPU machine or a
    misspelt name is one line, not a traceback after the checkpoint and the photos are read.
    """
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"--device {name!r}: not a device name (cpu, cuda, cuda:1, mps)") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if device.type not in available:
        raise UserError(f"--device {name!r}: predict runs on cpu, cuda, cuda:N or mps")
    if not available[device.type]:
        raise UserError(f"--device {name!r}: this machine has no {device.type} device")
    count = torch.cuda.device_count() if device.type == "cuda" else 1
    if device.index is not None and device.index >= count:
        raise UserError(f"--device {name!r}: this machine has {count} {device.type} device(s)")
    return device


def check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be at least 1")
    return batch_size


def with_tta(model: GeoLocator, tta: str | None) -> GeoLocator:
    """`model` predicting with test-time augmentation `tta` (none, mirror); None: its own."""
    if tta is not None:
        model.settings = model.settings.model_copy(update={"tta": tta})
    return model


def predict_table(
    model: GeoLocator,
    table: pd.DataFrame,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    top_k: int = TOP_CELLS,
) -> pd.DataFrame:
    """One row per location: uuid, predicted latitude/longitude, every decoding, confidence.

    When the table has true coordinates (and a split), they come along with `error_km`.
    Confidence: `expected_error_km` (NaN for a regression) and, for a classifier, the
    `top_k` likeliest cells as `top1_label`, `top1_prob`, ... (see Geography.decode).
    """
    model = model.to(device or default_device()).eval()
    dataset = LocationDataset(table.reset_index(drop=True), model.settings.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    parts: dict[str, list[np.ndarray]] = {}
    for batch in progress_of(loader, desc="predicting", enabled=progress):
        for key, values in model.locate(batch["images"], top_k).items():
            parts.setdefault(key, []).append(values)
    decoded = {key: np.concatenate(values) for key, values in parts.items()}
    out = pd.DataFrame({"uuid": dataset.uuids})
    if "split" in table:
        out["split"] = table.split.to_numpy()
    labelled = table.latitude.notna().all() if "latitude" in table else False
    if labelled:
        out["true_lat"], out["true_lon"] = table.latitude.to_numpy(), table.longitude.to_numpy()
    out["pred_lat"], out["pred_lon"] = decoded.pop("lat"), decoded.pop("lon")
    if labelled:
        out["error_km"] = haversine_km(out.true_lat, out.true_lon, out.pred_lat, out.pred_lon)
    if "label" in table:
        out["true_label"] = table.label.to_numpy()
    for key, values in decoded.items():
        plain = key in ("label", "prob", "expected_error_km") or key.startswith("top")
        out[key if plain else f"pred_{key}"] = values
    return out.rename(columns={"label": "pred_label", "prob": "pred_prob"})


def wrote_predictions(path: Path) -> bool:
    """Whether the regular file `path` begins with a header predict writes (PREDICTION_HEADERS).

    Only such a file is replaced without --overwrite: replacing it loses nothing of the user's.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(max(PREDICTION_HEADERS, key=len)) + 2)
    except OSError:
        return False
    first, newline, _ = head.partition(b"\n")
    return bool(newline) and first.rstrip(b"\r").decode("latin-1") in PREDICTION_HEADERS


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:  # b is not there (a checkpoint that is missing is refused when it loads)
        return False


def check_output(
    out: str | Path,
    dataset_dirs: Sequence[str | Path],
    inputs: Sequence[str | Path] = (),
    overwrite: bool = False,
) -> Path:
    """Refuse an --out whose writing would destroy something, in one line, before any long work.

    Refused always: a folder, a symbolic link, anything but a regular file (a FIFO, a
    device), one of the `inputs` (the checkpoint), a path inside one of `dataset_dirs`
    (nothing writes into a dataset or the folder of photos), a path under a file or without
    write permission. An existing regular file is replaced only when predict wrote it (its
    header is one of PREDICTION_HEADERS), or with `overwrite`. The CSV itself is written
    atomically (atomic.write_csv): an interrupted run leaves `out` as it was.
    """
    out = Path(out)
    for dataset_dir in dataset_dirs:
        if out.resolve().is_relative_to(Path(dataset_dir).resolve()):
            raise UserError(
                f"{out}: is inside the dataset {dataset_dir}; nothing is written into a dataset"
            )
    try:
        info = out.lstat()
    except (FileNotFoundError, NotADirectoryError):  # a path under a file: refused below
        info = None
    except OSError as exc:
        raise UserError(f"{out}: cannot be written ({exc.strerror or exc})") from None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise UserError(f"{out}: is a symbolic link; give the path of the CSV file itself")
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"{out}: is a folder; give the path of the CSV file to write")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{out}: not a regular file (a FIFO, device or socket); not replaced")
        for source in map(Path, inputs):
            if _same_file(out, source):
                raise UserError(f"{out}: is the input {source}; an input is never overwritten")
        if not overwrite and not wrote_predictions(out):
            raise UserError(
                f"{out}: exists and is not a predictions CSV (header {PREDICTION_HEADERS[0]});"
                " give a new path, or --overwrite to replace it"
            )
    parent = out.parent.resolve()
    while not parent.exists():  # the folders atomic_path would create
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{out}: cannot be written ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot be written (no permission to write in {parent})")
    return out


def check_inputs(
    dataset_dirs: list[str | Path],
    out: str | Path,
    inputs: Sequence[str | Path] = (),
    overwrite: bool = False,
    max_px: int = MAX_IMAGE_PX,
) -> pd.DataFrame:
    """The locations to predict, or a UserError naming every problem of the inputs and --out.

    Every view must be there and readable: a broken file is named now, not mid-inference.
    """
    check_output(out, dataset_dirs, inputs, overwrite)
    report = validate(list(dataset_dirs), max_px=max_px)
    if not report.ok:
        raise UserError("\n".join(map(str, report.problems)))
    return report.locations


def write_predictions(result: pd.DataFrame, out: str | Path) -> None:
    try:
        write_csv(result, out)
    except OSError as exc:  # the file system changed its mind since check_output
        raise UserError(f"{out}: cannot be written ({exc.strerror or exc})") from None


def predict_dirs(
    checkpoint: str | Path,
    dataset_dirs: list[str | Path],
    out: str | Path,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    with_confidence: bool = False,
    overwrite: bool = False,
    max_px: int = MAX_IMAGE_PX,
    tta: str | None = None,
) -> pd.DataFrame:
    """Write the competition's CSV (uuid, latitude, longitude) for folders of locations.

    `with_confidence` adds `expected_error_km` (empty for a regression model, which has no
    distribution to derive it from). `tta` (none, mirror) overrides the checkpoint's
    test-time augmentation. The options, the output path and the folders are checked
    first, then the checkpoint is loaded.
    """
    check_batch_size(batch_size)
    device = check_device(device)
    table = check_inputs(dataset_dirs, out, [checkpoint], overwrite, max_px)
    model = with_tta(load_checkpoint(checkpoint), tta)
    predictions = predict_table(
        model, table, batch_size=batch_size, device=device, progress=progress
    )
    uuid, latitude, longitude = PREDICTION_COLUMNS
    result = pd.DataFrame(
        {
            uuid: predictions.uuid,
            latitude: predictions.pred_lat,
            longitude: predictions.pred_lon,
        }
    )
    if with_confidence:
        result[CONFIDENCE_COLUMN] = predictions.expected_error_km
    write_predictions(result, out)
    return result


# The usual file names of IMAGE_FORMATS (.jpg, .jpeg, .png, .webp, ...), from Pillow's registry.
PHOTO_SUFFIXES = tuple(
    ext
    for fmt in IMAGE_FORMATS
    for ext in sorted(e for e, f in Image.registered_extensions().items() if f == fmt)
)


class PhotoDataset(Dataset):
    """Single photographs, each a location of one view: {"images": (1, 3, S, S) uint8}."""

    def __init__(self, paths: list[Path], image_size: int):
        self.paths, self.image_size = paths, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        view = torch.from_numpy(np.array(decode_view(self.paths[i], self.image_size)))
        return {"images": view.permute(2, 0, 1)[None]}


def photo_problems(paths: list[Path], max_px: int = MAX_IMAGE_PX) -> list[str]:
    """One line for each photo that cannot be a row of the CSV, all found before inference.

    A name that is not UTF-8 (its stem is the uuid the CSV holds), two files of one stem,
    and an image that does not decode whole: not a JPEG, PNG or WEBP whatever its name,
    over `max_px` a side or a decompression bomb, a truncated file, a header that promises
    more pixels than the data holds. Each photo is decoded once here (datasets.check_image,
    deep), on threads: PIL releases the GIL while decoding.
    """
    problems, seen = [], {}
    for path in paths:
        if not is_utf8_name(path.name):
            problems.append(
                f"{printable(path)}: file name is not valid UTF-8; rename it (its stem is the uuid)"
            )
        elif path.stem in seen:
            problems.append(
                f"{path}: same name as {seen[path.stem].name}; each uuid is a file stem"
            )
        seen.setdefault(path.stem, path)
    check = partial(check_image, max_px=max_px, deep=True)
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    with pool, warnings.catch_warnings():  # sizes are judged against max_px here
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        found = list(pool.map(check, paths))
    problems += [
        f"{printable(p)}: {problem}" for p, problem in zip(paths, found, strict=True) if problem
    ]
    return problems


def photo_files(photos: str | Path, max_px: int = MAX_IMAGE_PX) -> list[Path]:
    """Every image file of `photos` (not recursive), checked whole; else one line per problem.

    One bad photo refuses the run (as a bad view refuses a dataset): the CSV has a row for
    every file, or is not written.
    """
    photos = Path(photos)
    if not photos.is_dir():
        raise UserError(f"{photos}: no such folder of photos")
    paths = sorted(
        p for p in photos.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
    )
    if not paths:
        raise UserError(f"{photos}: no image files ({', '.join(PHOTO_SUFFIXES)})")
    problems = photo_problems(paths, max_px)
    if problems:
        raise UserError("\n".join(problems))
    return paths


def predict_photos(
    checkpoint: str | Path,
    photos: str | Path,
    out: str | Path,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    max_px: int = MAX_IMAGE_PX,
    tta: str | None = None,
) -> pd.DataFrame:
    """The competition's CSV for a folder of single photographs: each file (its stem as
    uuid) placed from its one view. A `concat` model cannot, and says so before any work.
    `tta` as predict_dirs'; a single photograph's mirror is the photograph flipped."""
    check_batch_size(batch_size)
    device = check_device(device)
    check_output(out, [photos], [checkpoint], overwrite)
    paths = photo_files(photos, max_px)
    model = with_tta(load_checkpoint(checkpoint), tta)
    if model.settings.fusion == "concat":
        raise UserError(f"{checkpoint}: {concat_refusal(1)}")
    model = model.to(device).eval()
    loader = DataLoader(PhotoDataset(paths, model.settings.image_size), batch_size=batch_size)
    lat, lon = [], []
    for batch in progress_of(loader, desc="predicting", enabled=progress):
        decoded = model.locate(batch["images"])
        lat.append(decoded["lat"])
        lon.append(decoded["lon"])
    uuid, latitude, longitude = PREDICTION_COLUMNS
    result = pd.DataFrame(
        {
            uuid: [p.stem for p in paths],
            latitude: np.concatenate(lat),
            longitude: np.concatenate(lon),
        }
    )
    write_predictions(result, out)
    return result
