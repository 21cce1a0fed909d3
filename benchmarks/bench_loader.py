"""Data loader benchmark: views/s at 224 px from 640 px JPEGs, with and without the image cache.

Writes a synthetic dataset at 640 px (the Street View size), then times one pass of the
training DataLoader decoding JPEGs on every access (reduced-size decoding included), and
one pass reading the memory-mapped cache (built once beforehand, its build time printed)
in the main process, as GeoDataModule does: worker processes only add shared-memory copies.
Goal: the cache at least 10 times faster. Usage: python benchmarks/bench_loader.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from torch.utils.data import DataLoader

from geoguesser.data.image_cache import ImageCache
from geoguesser.data.synthetic import generate
from geoguesser.data.views import LocationDataset


def views_per_second(dataset: LocationDataset, workers: int, batch_size: int = 32) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    count = sum(batch["images"].shape[0] * batch["images"].shape[1] for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "ds", args.locations, image_size=640, seed=0, progress=False)
        table = pd.read_csv(root / "data.csv").assign(dataset_dir=str(root.resolve()))
        direct = views_per_second(LocationDataset(table, args.image_size), args.workers)
        start = time.perf_counter()
        cache = ImageCache.open(
            Path(tmp) / "cache", root, table.uuid.tolist(), args.image_size, progress=False
        )
        build = time.perf_counter() - start
        with_cache = LocationDataset(table, args.image_size, {str(root.resolve()): cache})
        cached = views_per_second(with_cache, workers=0)
        cached_in_workers = views_per_second(with_cache, args.workers)

    size, workers = args.image_size, args.workers
    print(f"loader: {args.locations * 4} views, 640 px JPEG -> {size} px, {workers} workers")
    print(f"decoding every access: {direct:.0f} views/s")
    print(f"image cache (built once in {build:.1f} s), main process: {cached:.0f} views/s")
    print(f"image cache read through {workers} workers: {cached_in_workers:.0f} views/s")
    print(f"speed-up: {cached / direct:.1f}x (goal: 10x)")


if __name__ == "__main__":
    main()
