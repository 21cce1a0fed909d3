"""From photographs to coordinates: batched inference with a model or a checkpoint file.

Locations come as dataset folders (four views each), or as a folder of single photographs
(`predict_photos`), each placed on its own, for models whose fusion answers from one view.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from .atomic import write_csv
from .config import TOP_CELLS
from .data import LocationDataset
from .datasets import validate
from .errors import UserError
from .fusion import concat_refusal
from .geo import haversine_km
from .image_cache import decode_view
from .model import GeoLocator, load_checkpoint
from .progress import progress as progress_of


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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


def check_output(out: str | Path, dataset_dirs: list[str | Path]) -> Path:
    """Refuse an --out that cannot take the CSV, in one line, before any long work.

    A folder, a path under a file or without write permission, and a path inside one of
    the datasets (nothing writes into a dataset) are refused.
    """
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give the path of the CSV file to write")
    for dataset_dir in dataset_dirs:
        if out.resolve().is_relative_to(Path(dataset_dir).resolve()):
            raise UserError(
                f"{out}: is inside the dataset {dataset_dir}; nothing is written into a dataset"
            )
    parent = out.parent.resolve()
    while not parent.exists():  # the folders atomic_path would create
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{out}: cannot be written ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot be written (no permission to write in {parent})")
    return out


def check_inputs(dataset_dirs: list[str | Path], out: str | Path) -> pd.DataFrame:
    """The locations to predict, or a UserError naming every problem of the inputs and --out.

    Every view must be there and readable: a broken file is named now, not mid-inference.
    """
    check_output(out, dataset_dirs)
    report = validate(list(dataset_dirs))
    if not report.ok:
        raise UserError("\n".join(map(str, report.problems)))
    return report.locations


def predict_dirs(
    checkpoint: str | Path,
    dataset_dirs: list[str | Path],
    out: str | Path,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    with_confidence: bool = False,
) -> pd.DataFrame:
    """Write the competition's CSV (uuid, latitude, longitude) for folders of locations.

    `with_confidence` adds `expected_error_km` (empty for a regression model, which has no
    distribution to derive it from). The output path and the folders are checked first,
    then the checkpoint is loaded.
    """
    table = check_inputs(dataset_dirs, out)
    model = load_checkpoint(checkpoint)
    predictions = predict_table(
        model, table, batch_size=batch_size, device=device, progress=progress
    )
    result = pd.DataFrame(
        {
            "uuid": predictions.uuid,
            "latitude": predictions.pred_lat,
            "longitude": predictions.pred_lon,
        }
    )
    if with_confidence:
        result["expected_error_km"] = predictions.expected_error_km
    try:
        write_csv(result, out)
    except OSError as exc:  # the file system changed its mind since check_output
        raise UserError(f"{out}: cannot be written ({exc.strerror or exc})") from None
    return result


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class PhotoDataset(Dataset):
    """Single photographs, each a location of one view: {"images": (1, 3, S, S) uint8}."""

    def __init__(self, paths: list[Path], image_size: int):
        self.paths, self.image_size = paths, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        view = torch.from_numpy(np.array(decode_view(self.paths[i], self.image_size)))
        return {"images": view.permute(2, 0, 1)[None]}


def photo_files(photos: str | Path) -> list[Path]:
    """Every image file of `photos` (not recursive), checked readable; else one line each."""
    photos = Path(photos)
    if not photos.is_dir():
        raise UserError(f"{photos}: no such folder of photos")
    paths = sorted(
        p for p in photos.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
    )
    if not paths:
        raise UserError(f"{photos}: no image files ({', '.join(PHOTO_SUFFIXES)})")
    problems, seen = [], {}
    for path in paths:
        if path.stem in seen:
            problems.append(
                f"{path}: same name as {seen[path.stem].name}; each uuid is a file stem"
            )
        seen.setdefault(path.stem, path)
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            problems.append(f"{path}: not a readable image")
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
) -> pd.DataFrame:
    """The competition's CSV for a folder of single photographs: each file (its stem as
    uuid) placed from its one view. A `concat` model cannot, and says so before any work."""
    check_output(out, [photos])
    paths = photo_files(photos)
    model = load_checkpoint(checkpoint)
    if model.settings.fusion == "concat":
        raise UserError(f"{checkpoint}: {concat_refusal(1)}")
    model = model.to(device or default_device()).eval()
    loader = DataLoader(PhotoDataset(paths, model.settings.image_size), batch_size=batch_size)
    lat, lon = [], []
    for batch in progress_of(loader, desc="predicting", enabled=progress):
        decoded = model.locate(batch["images"])
        lat.append(decoded["lat"])
        lon.append(decoded["lon"])
    result = pd.DataFrame(
        {
            "uuid": [p.stem for p in paths],
            "latitude": np.concatenate(lat),
            "longitude": np.concatenate(lon),
        }
    )
    try:
        write_csv(result, out)
    except OSError as exc:
        raise UserError(f"{out}: cannot be written ({exc.strerror or exc})") from None
    return result
