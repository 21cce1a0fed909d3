"""Each location's four views as JPEG sheets beside a map, fetched by the browser only on a popup.

Sheets of 100 rows rather than a file per location: creating 10,000 small files costs more
than painting them, and a popup shows its row as a CSS background crop of the sheet.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from geoguesser.atomic import atomic_path
from geoguesser.data.image_cache import decode_view
from geoguesser.data.layout import view_paths

VIEW_PX = 64  # small enough for 10 MB at 3,000 locations; shown 1.5x larger
VIEWS_PER_SHEET = 100


def decoded_views(dataset_dirs: dict[str, str], size: int = VIEW_PX) -> Callable[[str], np.ndarray]:
    """uuid -> its four views (4, size, size, 3), decoded from the dataset's JPEGs."""

    def views(uuid: str) -> np.ndarray:
        return np.stack([decode_view(path, size) for path in view_paths(dataset_dirs[uuid], uuid)])

    return views


def _strip(views: np.ndarray, size: int) -> np.ndarray:
    """Four views side by side, `size` pixels high: one resize (box-reduced first, fast)."""
    strip = np.concatenate(list(views), axis=1)
    if strip.shape[0] == size:
        return strip
    image = Image.fromarray(strip).resize(
        (len(views) * size, size), Image.Resampling.BILINEAR, reducing_gap=1.0
    )
    return np.asarray(image)


def write_view_sheets(
    uuids, views: Callable[[str], np.ndarray], folder: str | Path, size: int = VIEW_PX
) -> dict[str, tuple[str, int]]:
    """Each location's four views as one row of a JPEG sheet of 100 rows in `folder`.

    Sheets rather than a file per location: creating 10,000 small files costs more than
    painting them, and a popup shows its row as a CSS background crop of the sheet.
    Returns uuid -> (sheet path relative to the folder's parent, row).
    """
    folder = Path(folder)
    uuids = list(dict.fromkeys(uuids))
    chunks = [uuids[i : i + VIEWS_PER_SHEET] for i in range(0, len(uuids), VIEWS_PER_SHEET)]

    def sheet(number: int) -> None:
        rows = [_strip(views(uuid), size) for uuid in chunks[number]]
        with atomic_path(folder / f"sheet-{number:04d}.jpg") as tmp:
            Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="JPEG", quality=75)

    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("sheet-*.jpg"):  # from an earlier build with more locations
        stale.unlink()
    with ThreadPoolExecutor() as pool:  # PIL releases the GIL while decoding and encoding
        list(pool.map(sheet, range(len(chunks))))
    return {
        uuid: (f"{folder.name}/sheet-{i // VIEWS_PER_SHEET:04d}.jpg", i % VIEWS_PER_SHEET)
        for i, uuid in enumerate(uuids)
    }
