"""Decoded, resized views kept in one memory-mapped uint8 array per (dataset, image size).

Decoding a 640 px JPEG costs far more than a forward pass of a small network, and on a big
GPU it is what training waits for. Each view is decoded once, with the JPEG decoder's own
reduced-size mode (DCT scaling) before the final resize, and later epochs and later runs
read the array. A fingerprint of every view file's size and modification time invalidates
the cache when the images change; the array is written under a temporary name and renamed,
so an interrupted build never looks complete. Processes opening the same cache at once
(the ranks of a fit started by torchrun or srun) take turns on a lock file beside it: the
first builds, the others then find it complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from geoguesser.atomic import atomic_path, locked, write_text
from geoguesser.data.images import open_image
from geoguesser.data.layout import VIEWS, view_paths
from geoguesser.progress import progress as progress_of

DECODER_VERSION = 1  # bump when decode_view changes, so old caches are rebuilt


def decode_view(path: str | Path, size: int) -> np.ndarray:
    """One view as a (size, size, 3) uint8 array: reduced-size JPEG decode, then bilinear resize.

    Only images.IMAGE_FORMATS open: any other file is an UnidentifiedImageError naming it.
    """
    with open_image(path) as image:
        image.draft("RGB", (size, size))  # lets libjpeg decode at 1/2, 1/4 or 1/8 scale
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image)


def decode_location(dataset_dir: str | Path, uuid: str, size: int) -> np.ndarray:
    """The four views of a location as (4, size, size, 3) uint8, in N, E, S, W order."""
    return np.stack([decode_view(path, size) for path in view_paths(dataset_dir, uuid)])


def fingerprint(dataset_dir: str | Path, uuids: list[str]) -> str:
    digest = hashlib.sha256()
    for uuid in uuids:
        for path in view_paths(dataset_dir, uuid):
            stat = path.stat()
            digest.update(f"{uuid}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_stem(cache_dir: str | Path, dataset_dir: str | Path, size: int) -> Path:
    """The cache's files without their suffix: one per (dataset folder, image size)."""
    dataset_dir = Path(dataset_dir).resolve()
    key = hashlib.sha1(str(dataset_dir).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{dataset_dir.name}-{key}-{size}px"


def array_bytes(n_locations: int, size: int) -> int:
    """The bytes of the cached views of `n_locations` (uint8, four size x size x 3 views each),
    so that a run can be sized before the cache is built."""
    return n_locations * len(VIEWS) * size * size * 3


class ImageCache:
    """Read access to the cached views of one dataset directory at one size."""

    def __init__(self, array: np.ndarray, uuids: list[str]):
        self.array = array
        self.row = {uuid: i for i, uuid in enumerate(uuids)}

    def __getitem__(self, uuid: str) -> np.ndarray:
        return self.array[self.row[uuid]]

    @classmethod
    def open(
        cls,
        cache_dir: str | Path,
        dataset_dir: str | Path,
        uuids: list[str],
        size: int,
        workers: int | None = None,
        progress: bool = True,
    ) -> ImageCache:
        """The cache for these locations, built (or rebuilt when the images changed) if needed."""
        dataset_dir = Path(dataset_dir).resolve()
        uuids = sorted(uuids)
        stem = cache_stem(cache_dir, dataset_dir, size)
        array_path, meta_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
        meta = {
            "dataset_dir": str(dataset_dir),
            "size": size,
            "decoder_version": DECODER_VERSION,
            "n_locations": len(uuids),
            "fingerprint": fingerprint(dataset_dir, uuids),
        }
        with locked(stem.with_suffix(".lock")):
            if meta_path.exists() and array_path.exists():
                stored = json.loads(meta_path.read_text())
                if {k: stored.get(k) for k in meta} == meta and stored.get("uuids") == uuids:
                    return cls(np.load(array_path, mmap_mode="r"), uuids)
            meta_path.unlink(missing_ok=True)  # from here on, the old cache is invalid
            _build(array_path, dataset_dir, uuids, size, workers, progress)
            write_text(meta_path, json.dumps({**meta, "uuids": uuids}))
            return cls(np.load(array_path, mmap_mode="r"), uuids)


def _build(
    array_path: Path, dataset_dir: Path, uuids: list[str], size: int, workers, progress
) -> None:
    shape = (len(uuids), len(VIEWS), size, size, 3)
    with atomic_path(array_path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)

        def fill(i: int) -> None:
            array[i] = decode_location(dataset_dir, uuids[i], size)

        # PIL releases the GIL while decoding, so threads use every core.
        with ThreadPoolExecutor(max_workers=workers or min(16, os.cpu_count() or 1)) as pool:
            jobs = pool.map(fill, range(len(uuids)))
            for _ in progress_of(
                jobs, len(uuids), f"caching {dataset_dir.name} at {size}px", enabled=progress
            ):
                pass
        array.flush()
