"""The embedded default dataset: SYNTHETIC Street View quadruplets drawn from real geography.

It exists so that every step of the workflow runs without the competition's photographs
(whose licence keeps them out of this repository). The locations and what each view shows
come from smooth fields over the real country (`geoguesser.data.landscape`); each view is
painted from its scene (`geoguesser.data.painter`). This module writes the dataset.

The output is exactly the competition layout, marked SYNTHETIC in a file beside data.csv
and in each JPEG's comment, so it is never mistaken for real data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid as uuidlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from shapely.geometry.base import BaseGeometry
from tqdm.auto import tqdm

from geoguesser.data.landscape import Landscape
from geoguesser.data.layout import CSV_NAME, SYNTHETIC_MARKER, VIEWS
from geoguesser.data.painter import render_view
from geoguesser.errors import UserError
from geoguesser.geo.borders import load_border, load_coast
from geoguesser.geo.coords import DEFAULT_CRS


def generate(
    out_dir: str | Path,
    locations: int = 2000,
    image_size: int = 128,
    seed: int = 0,
    border: BaseGeometry | None = None,
    coast: BaseGeometry | None = None,
    crs: str = DEFAULT_CRS,
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset in the competition layout; the same seed gives the same bytes.

    It is built in a temporary sibling folder and renamed at the end, so an interrupted run
    leaves nothing that looks like a finished dataset.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise UserError(f"{out_dir}: already exists; choose a new folder (nothing was changed)")
    if locations < 1 or image_size < 8:
        raise UserError(
            f"need at least 1 location and 8 px images, got {locations} and {image_size}"
        )
    landscape = Landscape(border or load_border(), coast or load_coast(), crs)
    rng = np.random.default_rng(seed)
    lat, lon = landscape.sample(locations, rng)
    ids = [str(uuidlib.UUID(bytes=rng.bytes(16), version=4)) for _ in range(locations)]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        # Scenes stream in chunks and each location is written as it comes: memory beyond the
        # location table does not grow with the number of locations.
        scenes = landscape.iter_scenes(lat, lon)
        comment = f"geoguesser SYNTHETIC data (seed {seed}); not a photograph".encode()
        for i, (location_id, scene) in enumerate(
            tqdm(
                zip(ids, scenes, strict=True),
                total=locations,
                desc="synthetic locations",
                disable=not progress,
            )
        ):
            view_rng = np.random.default_rng([seed, i])
            folder = work / "images" / location_id
            folder.mkdir(parents=True)
            for view, heading in enumerate(VIEWS):
                pixels = render_view(scene, view, image_size, view_rng)
                Image.fromarray(pixels).save(folder / f"{heading}.jpg", quality=90, comment=comment)
        frame = pd.DataFrame({"uuid": ids, "latitude": lat, "longitude": lon})
        frame.to_csv(work / CSV_NAME, index=True)  # the real files carry an unnamed index column
        (work / SYNTHETIC_MARKER).write_text(
            "SYNTHETIC geoguesser dataset: painted from smooth fields over the real Croatian\n"
            "geography, not photographs. Made by `geoguesser synth` with\n"
            f"locations={locations} image_size={image_size} seed={seed} crs={crs}\n"
        )
        os.replace(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out_dir
