"""From photographs to coordinates: batched inference with a model or a checkpoint file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from .atomic import write_csv
from .data import LocationDataset
from .datasets import validate
from .errors import UserError
from .geo import haversine_km
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
) -> pd.DataFrame:
    """One row per location: uuid, predicted latitude/longitude and every decoding.

    When the table has true coordinates (and a split), they come along with `error_km`.
    """
    model = model.to(device or default_device()).eval()
    dataset = LocationDataset(table.reset_index(drop=True), model.settings.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    parts: dict[str, list[np.ndarray]] = {}
    for batch in progress_of(loader, desc="predicting", enabled=progress):
        for key, values in model.locate(batch["images"]).items():
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
        out[key if key in ("label", "prob") else f"pred_{key}"] = values
    return out.rename(columns={"label": "pred_label", "prob": "pred_prob"})


def predict_dirs(
    checkpoint: str | Path,
    dataset_dirs: list[str | Path],
    out: str | Path,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Write the competition's CSV (uuid, latitude, longitude) for folders of locations.

    The folders are validated first (a missing or broken view is named before any work).
    """
    model = load_checkpoint(checkpoint)
    report = validate(list(dataset_dirs))
    if not report.ok:
        raise UserError("\n".join(map(str, report.problems)))
    table = report.locations
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
    write_csv(result, out)
    return result
