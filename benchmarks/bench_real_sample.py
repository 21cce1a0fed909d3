"""Real photographs: k-fold cross-validated error of every head and fusion on the public sample.

On `../shared/data/lumen-sample` (100 real LUMEN locations; skipped with one line when it is
absent), each fold is held out in turn and the rest split into train and validation with
configs/sample.yaml's shares; a model of each variant is fitted by the project's own
`training.fit.train` on the configured frozen backbone, and placed the held-out fold. Every
location goes through the backbone once for each band of the views (`view_rows`) in the
whole run: the fits share the data module's feature store (the backbone is frozen and
identical in all of them). Printed: mean and median km over all held-out locations for
each objective x fusion, the options (retrieval, haversine smoothing's tau_km, view
dropout, the band of rows seen), the one-view error (each view alone, averaged) against
four views, and the naive baseline measured on the same folds: always answering the
training locations' mean position.

Usage: python benchmarks/bench_real_sample.py [--folds 5] [--only NAME ...]
(needs `make sample-weights` first for configs/sample.yaml's weights)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from geoguesser.config import TrainSettings, load_settings
from geoguesser.data.enrich import prepare
from geoguesser.data.validate import load_locations
from geoguesser.errors import UserError
from geoguesser.geo.borders import load_border
from geoguesser.geo.coords import haversine_km, to_latlon, to_projected
from geoguesser.training.fit import train

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "lumen-sample"

# name -> settings that differ from configs/sample.yaml's
VARIANTS: dict[str, dict] = {
    f"{objective} {fusion}": {"objective": objective, "fusion": fusion}
    for objective in ("classification", "hybrid", "regression")
    for fusion in ("concat", "mean", "attention")
}
VARIANTS |= {
    "classification mean +retrieval": {"objective": "classification", "retrieval": True},
    "hybrid mean +retrieval": {"objective": "hybrid", "retrieval": True},
    "hybrid mean tau null": {"tau_km": None},
    "hybrid mean tau 25": {"tau_km": 25},
    "hybrid mean tau 150": {"tau_km": 150},
    "hybrid mean view_dropout 0.5": {"view_dropout": 0.5},
    "hybrid mean whole views": {"view_rows": [0.0, 1.0]},
    "hybrid mean band 0.2-0.9": {"view_rows": [0.2, 0.9]},
    "hybrid mean band 0.35-0.75": {"view_rows": [0.35, 0.75]},
}


def fold_of(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Each of n locations' fold, 0 to k-1 (bench_feature_probes.py draws the same folds)."""
    return rng.permutation(n) % k


def fold_tables(locations: pd.DataFrame, k: int, fractions, seed: int) -> list[pd.DataFrame]:
    """k copies of the locations with a `split` column: fold i is test, the rest train/val."""
    rng = np.random.default_rng(seed)
    fold = fold_of(len(locations), k, rng)
    val_share = fractions[1] / (fractions[0] + fractions[1])
    tables = []
    for i in range(k):
        split = np.where(fold == i, "test", "train").astype(object)
        rest = np.flatnonzero(fold != i)
        val = rng.choice(rest, size=max(1, round(val_share * len(rest))), replace=False)
        split[val] = "val"
        tables.append(locations.assign(split=split))
    return tables


def mean_guess_errors(locations: pd.DataFrame) -> np.ndarray:
    """Error of always answering the training locations' mean (in the projected plane)."""
    train, test = locations[locations.split == "train"], locations[locations.split == "test"]
    x, y = to_projected(train.latitude, train.longitude)
    lat, lon = to_latlon(np.array([x.mean()]), np.array([y.mean()]))
    return haversine_km(test.latitude, test.longitude, lat[0], lon[0])


@torch.no_grad()
def held_out_errors(model, table: pd.DataFrame, store: dict) -> dict[str, np.ndarray]:
    """Errors (km) on the test rows from all four views, and from each view alone."""
    rows = table[table.split == "test"]
    features = torch.stack(
        [store[(str(d), str(u))] for d, u in zip(rows.dataset_dir, rows.uuid, strict=True)]
    )
    model = model.eval()
    errors = {}
    fusion = model.settings.fusion
    for name, views in [("four", [0, 1, 2, 3])] + [(f"view{v}", [v]) for v in range(4)]:
        if fusion == "concat" and len(views) < 4:
            continue
        fused = model.fused({"features": features[:, views]})
        decoded = model.decode(model.net.head(fused), fused=fused)
        errors[name] = haversine_km(rows.latitude, rows.longitude, decoded["lat"], decoded["lon"])
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "sample.yaml")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--set", action="append", default=[], help="extra config override")
    args = parser.parse_args()
    if not (args.sample / "data.csv").is_file():
        print(f"skipped: the real sample is not at {args.sample}")
        return 0
    try:
        settings = load_settings(args.config, [f"data.dataset_dirs=[{args.sample}]", *args.set])
    except UserError as exc:
        print(f"bench_real_sample: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    border = load_border(settings.data.border, settings.data.country)
    locations, _ = load_locations(settings.data.dataset_dirs, border=border)
    tables = fold_tables(locations, args.folds, settings.split.fractions, args.seed)
    baseline = np.concatenate([mean_guess_errors(t) for t in tables])
    variants = {n: v for n, v in VARIANTS.items() if not args.only or n in args.only}
    base = settings.train.model_dump(mode="json")
    stores: dict = {}  # one feature store per band of the views: the same backbone otherwise
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = [
            prepare(t, border, settings.grid.cell_km, settings.grid.cell_deg, settings.data.crs)
            for t in tables
        ]
        for name, changes in variants.items():
            train_settings = TrainSettings.model_validate(
                {**base, **changes, "progress_bar": False, "image_cache_dir": str(tmp / "cache")}
            )
            errors: dict[str, list] = {}
            store = stores.setdefault(tuple(train_settings.view_rows), {})
            t0 = time.perf_counter()
            for i, (table, cells, scaler) in enumerate(prepared):
                run_dir = tmp / f"{len(rows)}-{i}"
                with contextlib.redirect_stdout(io.StringIO()):
                    result = train(
                        train_settings, table, cells, scaler, run_dir, border, feature_store=store
                    )
                for key, values in held_out_errors(result.model, table, store).items():
                    errors.setdefault(key, []).append(values)
            four = np.concatenate(errors["four"])
            views = [np.concatenate(errors[f"view{v}"]) for v in range(4) if f"view{v}" in errors]
            one = np.mean([e.mean() for e in views]) if views else float("nan")
            rows.append(
                {
                    "variant": name,
                    "mean_km": four.mean(),
                    "median_km": np.median(four),
                    "vs_baseline": four.mean() / baseline.mean(),
                    "one_view_mean_km": one,
                    "fit_s": (time.perf_counter() - t0) / len(prepared),
                }
            )
            print(
                f"{name:36s} mean {four.mean():6.1f} km  median {np.median(four):6.1f} km  "
                f"one view {one:6.1f} km  ({rows[-1]['fit_s']:.1f} s per fit)",
                flush=True,
            )
    s = settings.train
    print()
    print(
        f"{len(locations)} real locations, {args.folds}-fold CV (fold seed {args.seed}), "
        f"{s.backbone} frozen at {s.image_size} px, {settings.grid.cell_km:g} km cells; "
        f"other settings from {args.config.name}; {time.perf_counter() - started:.0f} s"
    )
    frame = pd.DataFrame(rows)
    frame.loc[len(frame)] = {
        "variant": "baseline: training mean",
        "mean_km": baseline.mean(),
        "median_km": np.median(baseline),
        "vs_baseline": 1.0,
        "one_view_mean_km": float("nan"),
        "fit_s": 0.0,
    }
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        cells = [v if isinstance(v, str) else f"{v:.2f}" for v in row]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
