"""Synthetic generator benchmark: locations per second at 128 px on one core.

Prints the rate of `geoguesser synth` writing a dataset (sampling, scene description,
painting, JPEG encoding, files), and of the naive way to paint the same views (every
land-cover texture on the full frame, then composited with masks) for the ratio.
Goal: at least 100 locations per second. Usage: python benchmarks/bench_synth.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says

import numpy as np  # noqa: E402

from geoguesser.data.landscape import Landscape  # noqa: E402
from geoguesser.data.painter import _canvas, _mix, render_view  # noqa: E402
from geoguesser.data.synthetic import generate  # noqa: E402
from geoguesser.geo.borders import load_border, load_coast  # noqa: E402


def naive_render(scene, view: int, size: int, rng) -> np.ndarray:
    """Full-frame float64 layers composited with np.where, fresh noise: how one first writes it."""
    u, v = _canvas(size)
    u, v = u.astype(float), v.astype(float)
    horizon = 0.5 + rng.normal(0, 0.025)
    sky = _mix([60, 120, 200], [205, 220, 235], np.clip(v / horizon, 0, 1)[..., None]).astype(float)
    speckle = rng.random((size, size, 1))
    depth = np.clip((v - horizon) / (1 - horizon), 1e-3, 1)
    layers = [
        np.broadcast_to([40, 80, 40], (size, size, 3)) * (0.7 + 0.4 * speckle),
        np.where(
            (np.sin(12 * np.pi * (u - 0.5) / depth) > 0)[..., None], [205, 185, 95], [130, 150, 70]
        ),
        np.broadcast_to([185, 182, 172], (size, size, 3)) * (0.85 + 0.25 * speckle),
        np.broadcast_to([150, 148, 140], (size, size, 3)) * np.ones((size, size, 1)),
    ]
    weights = [scene.forest[view], scene.field[view], scene.karst[view], scene.urban[view]]
    land = sum(w * layer for w, layer in zip(weights, layers, strict=True)) / max(
        sum(weights), 1e-6
    )
    image = np.where((v >= horizon)[..., None], land, sky)
    image = image + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(Path(tmp) / "ds", args.locations, args.image_size, seed=0, progress=False)
        total = time.perf_counter() - start

    landscape = Landscape(load_border(), load_coast())
    rng = np.random.default_rng(0)
    scenes = landscape.scenes(*landscape.sample(200, rng))
    timings = {}
    for name, paint in (
        ("vectorized, row-restricted", render_view),
        ("naive full-frame", naive_render),
    ):
        start = time.perf_counter()
        for i, scene in enumerate(scenes):
            paint(scene, i % 4, args.image_size, rng)
        timings[name] = (time.perf_counter() - start) / len(scenes) * 1000

    print(f"synth: {args.locations} locations at {args.image_size} px in {total:.2f} s")
    print(f"rate: {args.locations / total:.0f} locations/s (goal: 100 locations/s)")
    for name, ms in timings.items():
        print(f"paint one view, {name}: {ms:.2f} ms")
    ratio = timings["naive full-frame"] / timings["vectorized, row-restricted"]
    print(f"painting speed-up over naive: {ratio:.1f}x")


if __name__ == "__main__":
    main()
