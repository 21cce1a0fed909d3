"""How much place do frozen ImageNet features hold? Simple probes on the real sample.

bench_real_sample.py scores the project's heads; this asks the question under them: with
the backbone of configs/sample.yaml frozen, at several input sizes and crops, do any of
three classical predictors fitted on the other 80 locations place a held-out location
much better than the training mean? If none does, no head trained on these features will.

Probes (each fitted on a fold's 80 training locations, features standardized on them):
- ridge: kernel ridge regression of projected km on the mean of the four views' features;
- vote: softmax-weighted geometric median of the training locations, weights from cosine
  similarity of view-mean features (a nearest-neighbour vote that hedges between places);
- cells: logistic regression over 50 km cells with haversine-smoothed targets (tau 65 km),
  decoded as the geometric median of the training locations weighted by their cell's
  probability: the project's classification head, fitted exactly.
Each probe's hyper-parameter is swept and the best value reported, chosen on the held-out
folds themselves: an optimistic figure, which is the point of a ceiling. Repeated 5-fold
CV over three fold seeds (seed 0 gives bench_real_sample.py's folds).

Usage: python benchmarks/bench_feature_probes.py [--sizes 224 448] [--seeds 0 1 2]
(needs `make sample-weights` first)
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_real_sample import fold_of

from geoguesser.config import load_settings
from geoguesser.data.image_cache import decode_location
from geoguesser.data.validate import load_locations
from geoguesser.errors import UserError
from geoguesser.geo.borders import load_border
from geoguesser.geo.coords import haversine_km, to_latlon, to_projected
from geoguesser.model.backbones import build_backbone

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "lumen-sample"
BAND = (0.30, 0.80)  # rows kept by the `band` crop: the horizon, without sky and road


@torch.no_grad()
def view_features(net, table, size: int, band: bool, mean, std) -> np.ndarray:
    """(N, 4, D) pooled features of every location's views, in batches of a few locations."""
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(table), 8):
        rows = table.iloc[start : start + 8]
        images = np.concatenate(
            [decode_location(d, u, size) for d, u in zip(rows.dataset_dir, rows.uuid, strict=True)]
        )
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        if band:
            x = x[:, :, int(BAND[0] * size) : int(BAND[1] * size)]
        out.append(net((x - mean) / std).view(len(rows), 4, -1).numpy())
    return np.concatenate(out)


def geometric_median(points: np.ndarray, weights: np.ndarray, steps: int = 60) -> np.ndarray:
    """Weiszfeld's iteration: the point that minimizes the weighted sum of distances."""
    z = weights @ points / weights.sum()
    for _ in range(steps):
        w = weights / np.maximum(np.linalg.norm(points - z, axis=1), 1e-6)
        z = w @ points / w.sum()
    return z


def standardized(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def ridge(train, km, test, alpha):
    a, b = standardized(train, test)
    coef = np.linalg.solve(a @ a.T + alpha * np.eye(len(a)), km - km.mean(0))
    return b @ a.T @ coef + km.mean(0)


def vote(train, km, test, temperature):
    a, b = standardized(train, test)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    sims = b @ a.T
    weights = np.exp((sims - sims.max(1, keepdims=True)) / temperature)
    return np.array([geometric_median(km, w) for w in weights])


def cells(train, km, test, weight_decay, cell_km=50.0, tau_km=65.0):
    keys = np.floor(km / cell_km).astype(int)
    _, label = np.unique(keys, axis=0, return_inverse=True)
    label = label.ravel()
    centroids = np.array([km[label == j].mean(0) for j in range(label.max() + 1)])
    target = np.exp(-np.linalg.norm(km[:, None] - centroids[None], axis=2) / tau_km)
    target /= target.sum(1, keepdims=True)
    a, b = (torch.tensor(m, dtype=torch.float64) for m in standardized(train, test))
    target = torch.tensor(target)
    w = torch.zeros(a.shape[1], len(centroids), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(centroids), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, bias], max_iter=300, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = -(target * torch.log_softmax(a @ w + bias, 1)).sum(1).mean()
        value = value + weight_decay * (w**2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        probs = torch.softmax(b @ w + bias, 1).numpy()
    count = np.bincount(label)
    return np.array([geometric_median(km, p[label] / count[label]) for p in probs])


def _with_setting(fit, value, train, km, test):
    return fit(train, km, test, value)


PROBES = {
    "ridge": (ridge, [300.0, 1000.0, 3000.0, 10000.0]),
    "vote": (vote, [0.05, 0.1, 0.2]),
    "cells": (cells, [0.01, 0.03, 0.1]),
}


def cv_errors(predict, features, km, lat, lon, seeds, k=5) -> np.ndarray:
    """Held-out errors (km) for every location under each fold seed: (len(seeds), N)."""
    errors = np.zeros((len(seeds), len(km)))
    for s, seed in enumerate(seeds):
        fold = fold_of(len(km), k, np.random.default_rng(seed))
        for i in range(k):
            test, train = fold == i, fold != i
            guess = predict(features[train], km[train], features[test])
            glat, glon = to_latlon(guess[:, 0] * 1000, guess[:, 1] * 1000)
            errors[s, test] = haversine_km(lat[test], lon[test], glat, glon)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 640])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "sample.yaml")
    args = parser.parse_args()
    if not (SAMPLE / "data.csv").is_file():
        print(f"skipped: the real sample is not at {SAMPLE}")
        return 0
    try:
        config = load_settings(args.config, [f"data.dataset_dirs=[{SAMPLE}]"])
        settings = config.train
        net = build_backbone(settings.backbone, REPO / settings.weights).eval()
        border = load_border(config.data.border, config.data.country)
        table, _ = load_locations(config.data.dataset_dirs, border=border)
    except UserError as exc:
        print(f"bench_feature_probes: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lat, lon = table.latitude.to_numpy(), table.longitude.to_numpy()
    km = np.stack(to_projected(lat, lon), 1) / 1000.0
    started = time.perf_counter()

    def constant(point):
        return lambda train, km_, test: np.repeat(point(km_)[None], len(test), 0)

    rows = []
    for name, point in [
        ("training mean", lambda p: p.mean(0)),
        ("training geometric median", lambda p: geometric_median(p, np.ones(len(p)))),
    ]:
        e = cv_errors(constant(point), km, km, lat, lon, args.seeds)
        rows.append({"features": "none", "probe": name, "best": "", "mean_km": e.mean()})
    specs = [(size, False) for size in args.sizes] + [(448, True)]
    for size, band in specs:
        t0 = time.perf_counter()
        views = view_features(net, table, size, band, settings.mean, settings.std)
        label = f"{size} px" + (" band" if band else "")
        print(f"{label}: features in {time.perf_counter() - t0:.0f} s", flush=True)
        pooled = views.mean(1)
        for probe, (fit, grid) in PROBES.items():
            scores = {}
            for value in grid:
                predict = functools.partial(_with_setting, fit, value)
                scores[value] = cv_errors(predict, pooled, km, lat, lon, args.seeds).mean()
            best = min(scores, key=scores.get)
            rows.append(
                {"features": label, "probe": probe, "best": f"{best:g}", "mean_km": scores[best]}
            )
            print(
                f"  {probe:6s} " + "  ".join(f"{v:g}: {s:.1f}" for v, s in scores.items()),
                flush=True,
            )
    frame = pd.DataFrame(rows)
    baseline = frame.mean_km.iloc[0]
    frame["vs_mean_guess"] = frame.mean_km / baseline
    print()
    print(
        f"{len(table)} real locations, 5-fold CV x fold seeds {args.seeds}, {settings.backbone} "
        f"frozen ({settings.weights}); band = rows {BAND[0]:.0%}-{BAND[1]:.0%} of each view; "
        f"{time.perf_counter() - started:.0f} s"
    )
    print("| features | probe | best setting | mean km | / mean guess |")
    print("|---|---|---|---|---|")
    for r in frame.itertuples(index=False):
        print(f"| {r.features} | {r.probe} | {r.best} | {r.mean_km:.1f} | {r.vs_mean_guess:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
