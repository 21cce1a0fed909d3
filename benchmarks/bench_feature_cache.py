"""Feature cache benchmark: the time of a frozen-backbone epoch with and without the cache.

Trains resnet18 (random weights: speed does not depend on them) with the backbone frozen for
three epochs, once recomputing backbone features every epoch and once caching them in the
first. Images come from the image cache in both runs, so the difference is the backbone.
Goal: epochs after the first at least 20 times faster.
Usage: python benchmarks/bench_feature_cache.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from pytorch_lightning.callbacks import Callback

from geoguesser.config import TrainSettings
from geoguesser.data.enrich import prepare
from geoguesser.data.synthetic import generate
from geoguesser.data.validate import load_locations
from geoguesser.geo.borders import load_border
from geoguesser.geo.splits import split_locations
from geoguesser.training.fit import train


class EpochTimer(Callback):
    """Each training epoch's time, and the whole fit's (which also counts work done between
    epochs, such as filling the feature cache when the loaders are made)."""

    def __init__(self):
        self.times: list[float] = []

    def on_fit_start(self, trainer, pl_module):
        self.fit_start = time.perf_counter()

    def on_fit_end(self, trainer, pl_module):
        self.fit = time.perf_counter() - self.fit_start

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=160)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = generate(
            tmp / "ds", args.locations, image_size=args.image_size, seed=0, progress=False
        )
        border = load_border()
        locations, _ = load_locations([root], border=border)
        locations = split_locations(locations, fractions=(0.9, 0.05, 0.05), seed=0)
        table, cells, scaler = prepare(locations, border, cell_km=50)
        timings, fits = {}, {}
        for cached in (False, True):
            timer = EpochTimer()
            config = TrainSettings(
                backbone=args.backbone, image_size=args.image_size, batch_size=32,
                num_workers=0, max_epochs=3, freeze_epochs=3, feature_cache=cached,
                image_cache_dir=str(tmp / "cache"), progress_bar=False, accelerator="cpu",
                devices=1, scheduler="none",
            )  # fmt: skip
            train(config, table, cells, scaler, tmp / f"run-{cached}", border, callbacks=[timer])
            timings[cached] = timer.times
            fits[cached] = timer.fit

    n = int((table.split == "train").sum())
    print(f"frozen {args.backbone} at {args.image_size} px, {n} training locations ({4 * n} views)")
    for cached, times in timings.items():
        label = "feature cache" if cached else "no cache     "
        print(
            f"{label}: epoch times " + ", ".join(f"{t:.2f} s" for t in times),
            f"(whole fit {fits[cached]:.1f} s)",
        )
    later = np.mean(timings[False][1:]) / np.mean(timings[True][1:])
    print(f"speed-up of epochs after the first: {later:.0f}x (goal: 20x)")


if __name__ == "__main__":
    main()
