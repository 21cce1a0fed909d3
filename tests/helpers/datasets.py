"""Tiny labelled datasets in the competition layout, made on the spot: seeded, no photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from geoguesser.data.layout import VIEWS

# Points inside the 1:10m border: Zagreb, Split, Osijek, Rijeka, Zadar, Karlovac.
CROATIAN_POINTS = [
    (45.8150, 15.9819),
    (43.5200, 16.4700),
    (45.5550, 18.6955),
    (45.3271, 14.4422),
    (44.1200, 15.2500),
    (45.4870, 15.5478),
]


def write_jpeg(path: Path, seed: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def make_dataset(
    root: Path, points=CROATIAN_POINTS, prefix: str = "loc", with_csv: bool = True
) -> Path:
    """A labelled dataset in the competition layout, index column included like the real files."""
    rows = []
    for i, (lat, lon) in enumerate(points):
        uuid = f"{prefix}-{i:04d}"
        for view, heading in enumerate(VIEWS):
            write_jpeg(root / "images" / uuid / f"{heading}.jpg", seed=i * 4 + view)
        rows.append({"uuid": uuid, "latitude": lat, "longitude": lon})
    if with_csv:
        pd.DataFrame(rows).to_csv(root / "data.csv", index=True)
    return root
