"""Which cells, heads and options place locations best: one table per dataset and size.

Every row is a set of settings (`--set`-style overrides: `grid.*`, `train.*`) fitted by the
project's own `training.fit.train` on a frozen pretrained backbone, and scored on held-out
locations. Every row of a table sees the same split and the same seed, and every fit of a
dataset shares one feature store, so each view goes through the backbone once in the whole
run; the store is kept under `--cache` (one file per dataset and backbone setting), so a
rerun reuses it.

(a) Synthetic data (`geoguesser synth`, painted at the backbone's size) at the sizes of
    `--sizes`: the largest is split once (the project's random split at 80/10/10, seed 0);
    a size N trains and validates on the first 0.9 N of its train and val locations, and
    every size is scored on the same test locations, so that what changes down a column is
    the amount of data. Settings: configs/lumen.yaml with the backbone swapped for
    EfficientNet-Lite0 (configs/sample.yaml's weights) frozen at `--synth-px`, and the fit
    cut to its head phase (frozen throughout, `--synth-epochs`), on the CPU.
(b) The real sample (100 locations), by k-fold cross-validation (bench_real_sample.py's
    folds), with configs/sample.yaml's settings.

Printed for each row: the number of classes, mean and median km, acc@25 km, region
accuracy (the share of locations placed in their true county) where the project has the
regions, the ratio of the mean to the baseline (always answering the training locations'
mean), the mean difference from the table's first row over the same locations with its
standard error (a difference within two of them is noise), for the real sample the spread
of the folds' means, and the seconds one fit took.

Usage: python benchmarks/bench_methods.py [--sizes 1000 4000 16000] [--folds 5]
       [--real/--no-real] [--only NAME ...] [--cache DIR]
(needs `make sample-weights` first, for EfficientNet-Lite0's weights)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import inspect
import io
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_real_sample import SAMPLE, fold_tables

import geoguesser
from geoguesser.atomic import atomic_path, locked
from geoguesser.config import Settings, load_settings
from geoguesser.data.enrich import prepare
from geoguesser.data.normalization import normalization
from geoguesser.data.synthetic import generate
from geoguesser.data.validate import load_locations
from geoguesser.data.views import LocationDataset
from geoguesser.errors import UserError
from geoguesser.geo.borders import load_border
from geoguesser.geo.coords import haversine_km
from geoguesser.geo.grid import kept_cells
from geoguesser.geo.metrics import mean_location, region_accuracy
from geoguesser.geo.regions import load_regions
from geoguesser.geo.splits import split_locations
from geoguesser.model.features import MIRRORED, backbone_features
from geoguesser.model.network import MultiViewNet
from geoguesser.model.tta import MIRRORED_FEATURES
from geoguesser.training.fit import train

REPO = Path(__file__).resolve().parents[1]
# Each fit writes a checkpoint every epoch, backbone included (18 MB for Lite0) and deleted
# with its run folder at once: in memory, where the system has such a folder, not on a disk
# other work may be waiting on.
RUNS_IN = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
WEIGHTS = REPO / "weights" / "efficientnet_lite0.pth"

# The design (docs/benchmarks.md says why): each kind of cells with the classification head,
# then with its coarser levels' cross-entropy, then with the hybrid head; the contrastive
# head, which has no cells; and the reference fitted with test-time mirroring (every row is
# also placed with it put in or taken out: the "TTA" column). Each row: overrides of the
# table's base settings; the first is the reference the others are compared with.
KINDS = ("square", "quadtree", "voronoi", "regions")
HIERARCHY = 2  # coarser levels: 2x2 and 4x4 blocks of squares, or a cell's parent_1, parent_2
ROWS: dict[str, list[str]] = {
    **{f"{k} classification": [f"grid.kind={k}", "train.objective=classification"] for k in KINDS},
    **{
        f"{k} classification +hierarchy": [
            f"grid.kind={k}",
            "train.objective=classification",
            f"train.hierarchy={HIERARCHY}",
        ]
        for k in KINDS
    },
    **{f"{k} hybrid": [f"grid.kind={k}", "train.objective=hybrid"] for k in KINDS},
    "contrastive": ["train.objective=contrastive"],
    "square classification, fitted with TTA": [
        "grid.kind=square",
        "train.objective=classification",
        "train.tta=mirror",
    ],
}
# The real sample's 68 training locations a fold: the kinds' defaults, made for thousands,
# would leave the quadtree unsplit (same as squares) and give Voronoi about a cell a location.
# There each kind gets about as many cells as 50 km squares give (20 or so).
REAL_KIND_SETTINGS = {
    "quadtree": ["grid.cell_km=100", "grid.max_train=8"],
    "voronoi": ["grid.cells=20"],
    "regions": ["grid.min_region_train=3"],
}


def synthetic_overrides(px: int, epochs: int) -> list[str]:
    """configs/lumen.yaml's settings made to run on a CPU: frozen Lite0, the head phase only."""
    return [
        "train.backbone=timm/efficientnet_lite0",
        f"train.weights={WEIGHTS}",
        "train.mean=[0.5,0.5,0.5]",
        "train.std=[0.5,0.5,0.5]",
        f"train.image_size={px}",
        "train.batch_size=128",  # a step costs the same at 32 or 128 on a CPU: 4x fewer
        "train.lr=0.003",  # and a larger step for the larger batch
        f"train.freeze_epochs={epochs}",
        f"train.max_epochs={epochs}",
        "train.accelerator=cpu",
        "train.devices=1",
        "train.precision=32-true",
        "train.channels_last=false",
        "train.num_workers=0",
        "train.image_cache_dir=null",
        # The rows compare these choices from the same start, so the start makes none of
        # them (lumen.yaml now chooses both from this benchmark's tables).
        "train.hierarchy=0",
        "train.tta=none",
    ]


@dataclass
class Placed:
    """One row's held-out placements: where each test location was, and where it was put
    (by the model as fitted, and with test-time mirroring put in or taken out)."""

    name: str
    lat: np.ndarray
    lon: np.ndarray
    pred_lat: np.ndarray
    pred_lon: np.ndarray
    tta_lat: np.ndarray
    tta_lon: np.ndarray
    fold: np.ndarray
    classes: int
    fit_s: float
    errors: np.ndarray = field(init=False)
    tta_errors: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.errors = haversine_km(self.lat, self.lon, self.pred_lat, self.pred_lon)
        self.tta_errors = haversine_km(self.lat, self.lon, self.tta_lat, self.tta_lon)

    def county_accuracy(self, crs: str) -> float:
        """The share of locations placed in their own county (Croatia's 21)."""
        counties = load_regions("counties")
        return region_accuracy(counties, self.lat, self.lon, self.pred_lat, self.pred_lon, crs)


# --- data and features -------------------------------------------------------------------


def synthetic_dataset(cache: Path, n: int, px: int) -> Path:
    """The synthetic dataset of n locations at px pixels in `cache`, painted once (seed 0)."""
    out = cache / f"synth-{n}-{px}px-seed0"
    with locked(cache / f".{out.name}.lock"):
        if not out.exists():
            t0 = time.perf_counter()
            generate(out, locations=n, image_size=px, seed=0, progress=False)
            print(
                f"painted {n:,} synthetic locations at {px} px in {time.perf_counter() - t0:.0f} s"
            )
    return out


def store_path(cache: Path, settings: Settings, dataset_dir: Path) -> Path:
    """The feature file of one dataset under one frozen backbone: everything that shapes it."""
    s = settings.train
    csv = (Path(dataset_dir) / "data.csv").read_bytes()
    weights = Path(s.weights).read_bytes() if s.weights and Path(s.weights).is_file() else b""
    payload = {
        "dataset": str(Path(dataset_dir).resolve()),
        "csv": hashlib.sha256(csv).hexdigest(),
        "backbone": s.backbone,
        "weights": hashlib.sha256(weights).hexdigest() if weights else s.weights,
        "image_size": s.image_size,
        "view_rows": list(s.view_rows),
        "mean": s.mean,
        "std": s.std,
        "normalization": s.normalization,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return cache / f"features-{Path(dataset_dir).name}-{digest}.pt"


def feature_store(settings: Settings, locations: pd.DataFrame, mirror: pd.Series, path: Path):
    """Frozen features of every location, and of the `mirror` ones' mirrored scenes.

    A dict from (dataset folder, uuid) to the (4, D) features, and from (folder, uuid,
    MIRRORED) to the mirrored scene's (test-time mirroring needs those of the validation and
    test locations), as the data module's store keeps them: read from `path`, whatever is
    missing computed by the backbone once and `path` rewritten.
    """
    with locked(path.with_suffix(".lock")):
        store: dict = {}
        if path.exists():
            saved = torch.load(path, weights_only=True)
            store = dict(zip(map(tuple, saved["keys"]), saved["features"], strict=True))
        before, t0 = len(store), time.perf_counter()
        s = settings.train
        dataset = LocationDataset(locations.assign(split="train"), s.image_size)
        mean, std = normalization(s, dataset)
        torch.manual_seed(s.seed)
        net = MultiViewNet.build(s, 1, mean, std)
        backbone_features(net, dataset, s.batch_size, s.num_workers, store)
        mirrored = LocationDataset(locations[mirror.to_numpy()].assign(split="train"), s.image_size)
        backbone_features(net, mirrored, s.batch_size, s.num_workers, store, mirrored=True)
        if len(store) > before:
            keys = list(store)
            with atomic_path(path) as tmp:
                torch.save({"keys": keys, "features": torch.stack([store[k] for k in keys])}, tmp)
            print(
                f"features of {len(store) - before:,} scenes ({4 * (len(store) - before):,} "
                f"views) by frozen {s.backbone} at {s.image_size} px: "
                f"{time.perf_counter() - t0:.0f} s, kept in {path}",
                flush=True,
            )
    return store


def growth_splits(locations: pd.DataFrame, sizes: list[int], seed: int) -> dict[int, pd.DataFrame]:
    """Per size, a table with `split`: the first 0.9 N train/val rows and the common test rows."""
    split = split_locations(locations, (0.8, 0.1, 0.1), seed=seed)
    test = split[split.split == "test"]
    rest = split[split.split != "test"]
    rest = rest.iloc[np.random.default_rng(seed).permutation(len(rest))]
    return {n: pd.concat([rest.iloc[: round(0.9 * n)], test]) for n in sizes}


# --- one row -------------------------------------------------------------------------------


def prepared(settings: Settings, table: pd.DataFrame, border):
    """(enriched table, cells, scaler) of a split table: the row's grid, from its train rows."""
    return prepare(table, border, crs=settings.data.crs, grid=settings.grid)


@torch.no_grad()
def place(model, table: pd.DataFrame, store: dict, tta: str) -> tuple[np.ndarray, np.ndarray]:
    """The fitted model's guesses for the test rows from their views' features, `tta` on or off.

    The model answers through its own evaluation path (GeoLocator.answered), with the
    setting `tta` put in for this call: with "mirror" it also reads the mirrored scenes'
    features from the store, and a model fitted either way is placed both ways.
    """
    rows = table[table.split == "test"]
    keys = list(zip(rows.dataset_dir.astype(str), rows.uuid.astype(str), strict=True))
    batch = {"features": torch.stack([store[k] for k in keys])}
    if tta == "mirror":
        batch[MIRRORED_FEATURES] = torch.stack([store[(*k, MIRRORED)] for k in keys])
    model = model.eval()
    fitted_with = model.settings
    model.settings = fitted_with.model_copy(update={"tta": tta})
    try:
        outputs, fused = model.answered(batch)
        decoded = model.decode(outputs, fused=fused)
    finally:
        model.settings = fitted_with
    return np.asarray(decoded["lat"]), np.asarray(decoded["lon"])


@functools.cache
def code_digest() -> str:
    """A hash of the library's code and of `place`: a placement stays valid while they do."""
    digest = hashlib.sha256(inspect.getsource(place).encode())
    for path in sorted(Path(geoguesser.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fit_once(settings: Settings, table: pd.DataFrame, border, store: dict, cache: Path) -> dict:
    """One fit's test placements and cost, or those a run of the same code already made.

    Kept in `cache`/placements, named by the settings, the split and the code, so that an
    interrupted or widened run (more rows, more sizes) fits only what it has not yet.
    """
    split = pd.util.hash_pandas_object(table[["uuid", "split"]], index=False).to_numpy()
    payload = json.dumps(settings.model_dump(mode="json"), sort_keys=True, default=str)
    key = hashlib.sha256(payload.encode() + split.tobytes() + code_digest().encode()).hexdigest()[
        :24
    ]
    path = cache / "placements" / f"{key}.npz"
    if path.exists():
        return dict(np.load(path))
    enriched, cells, scaler = prepared(settings, table, border)
    train_settings = settings.train.model_copy(update={"progress_bar": False})
    t0 = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(dir=RUNS_IN) as run_dir,
        contextlib.redirect_stdout(io.StringIO()),
    ):
        result = train(
            train_settings, enriched, cells, scaler, run_dir, border, feature_store=store
        )
        pred_lat, pred_lon = place(result.model, enriched, store, "none")
        tta_lat, tta_lon = place(result.model, enriched, store, "mirror")
    test = enriched[enriched.split == "test"]
    found = {
        "lat": test.latitude.to_numpy(),
        "lon": test.longitude.to_numpy(),
        "pred_lat": pred_lat,
        "pred_lon": pred_lon,
        "tta_lat": tta_lat,
        "tta_lon": tta_lon,
        "classes": np.array(len(kept_cells(cells))),
        "fit_s": np.array(time.perf_counter() - t0),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.savez(file, **found)
    return found


def fit_row(
    name: str, settings: Settings, tables: list[pd.DataFrame], border, store: dict, cache: Path
) -> Placed:
    """Fit the row once per table (a size, or each fold) and place each table's test rows."""
    fits = [fit_once(settings, table, border, store, cache) for table in tables]
    columns = ("lat", "lon", "pred_lat", "pred_lon", "tta_lat", "tta_lon")
    stacked = [np.concatenate([f[k] for f in fits]) for k in columns]
    fold = np.concatenate([np.full(len(f["lat"]), i) for i, f in enumerate(fits)])
    classes = round(np.mean([f["classes"] for f in fits]))
    return Placed(name, *stacked, fold, classes, float(np.mean([f["fit_s"] for f in fits])))


def baseline(tables: list[pd.DataFrame], crs: str) -> Placed:
    """Always answering the mean of the training locations, on each table's test rows."""
    parts = []
    for table in tables:
        train_rows, test = table[table.split == "train"], table[table.split == "test"]
        lat, lon = mean_location(train_rows.latitude, train_rows.longitude, crs)
        guess = [np.full(len(test), lat), np.full(len(test), lon)]
        parts.append([test.latitude.to_numpy(), test.longitude.to_numpy(), *guess, *guess])
    stacked = [np.concatenate([p[k] for p in parts]) for k in range(6)]
    fold = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])
    return Placed("baseline: training mean", *stacked, fold, 1, 0.0)


# --- the table -----------------------------------------------------------------------------


def table_lines(
    placed: list[Placed], refused: dict[str, str], base: Placed, folds: bool, crs: str
) -> list[str]:
    """The markdown table: a line per row (a refused one says why), the baseline last."""
    reference = placed[0] if placed else base
    head = ["row", "classes", "mean km", "median km", "acc@25 km", "county acc", "/ baseline"]
    head += ["Δ mean vs first (± se)", "mean km, TTA", *(["fold sd"] if folds else []), "fit s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
    for row in [*placed, base]:
        if row is base:
            lines += [f"| {name} | refused: {why} |" for name, why in refused.items()]
        e = row.errors
        diff = e - reference.errors
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        cells = [
            row.name,
            f"{row.classes:,}",
            f"{e.mean():.1f}",
            f"{np.median(e):.1f}",
            f"{(e <= 25).mean():.3f}",
            f"{row.county_accuracy(crs):.3f}",
            f"{e.mean() / base.errors.mean():.3f}",
            "" if row is reference else f"{diff.mean():+.1f} ± {se:.1f}",
            "" if row is base else f"{row.tta_errors.mean():.1f}",
        ]
        if folds:
            means = [e[row.fold == f].mean() for f in np.unique(row.fold)]
            cells.append(f"{np.std(means, ddof=1):.1f}")
        cells.append(f"{row.fit_s:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def run_table(
    title: str, settings: dict[str, Settings], tables: list[pd.DataFrame], border, store, cache
) -> list[str]:
    """Fit every row on the tables, print each as it ends, and return the titled table."""
    placed, refused = [], {}
    t0 = time.perf_counter()
    for name, row_settings in settings.items():
        try:
            p = fit_row(name, row_settings, tables, border, store, cache)
        except UserError as exc:  # an option the project refuses on this data: say so, go on
            refused[name] = str(exc).splitlines()[0]
            print(f"  {title}: {name:32s} refused: {refused[name]}", flush=True)
            continue
        placed.append(p)
        print(
            f"  {title}: {name:32s} mean {p.errors.mean():6.1f} km  median "
            f"{np.median(p.errors):6.1f} km  ({p.fit_s:.1f} s a fit)",
            flush=True,
        )
    crs = next(iter(settings.values())).data.crs
    base = baseline(tables, crs)
    lines = [f"### {title} ({time.perf_counter() - t0:.0f} s)", ""]
    return lines + table_lines(placed, refused, base, len(tables) > 1, crs)


# --- the two parts -------------------------------------------------------------------------


def row_settings(
    config: Path, common: list[str], only: list[str] | None, kinds=lambda name: []
) -> dict[str, Settings]:
    """Each row's settings, checked by the schema before any long work starts.

    The data folder (perhaps not painted yet) is put in afterwards with `on_data`; the
    check reads a stand-in folder that holds an empty data.csv and is gone at once.
    """
    names = [n for n in ROWS if not only or n in only]
    with tempfile.TemporaryDirectory() as stand_in:
        (Path(stand_in) / "data.csv").touch()
        data = f"data.dataset_dirs=[{stand_in}]"
        return {n: load_settings(config, [*common, *ROWS[n], *kinds(n), data]) for n in names}


def real_kind(name: str) -> list[str]:
    """The real sample's settings of the row's kind of cells (REAL_KIND_SETTINGS)."""
    kind = next((k for k in KINDS if f"grid.kind={k}" in ROWS[name]), "square")
    return REAL_KIND_SETTINGS.get(kind, [])


def on_data(settings: dict[str, Settings], dataset: Path) -> dict[str, Settings]:
    """The rows' settings reading `dataset`."""
    return {
        name: s.model_copy(update={"data": s.data.model_copy(update={"dataset_dirs": [dataset]})})
        for name, s in settings.items()
    }


def synthetic_part(args, rows: dict[str, Settings]) -> list[str]:
    dataset = synthetic_dataset(args.cache, args.locations, args.synth_px)
    settings = on_data(rows, dataset)
    first = next(iter(settings.values()))
    border = load_border(first.data.border, first.data.country)
    locations, _ = load_locations([dataset], border=border)
    tables = growth_splits(locations, args.sizes, seed=0)
    test = locations.uuid.isin(tables[max(args.sizes)].query("split == 'test'").uuid)
    store = feature_store(first, locations, test, store_path(args.cache, first, dataset))
    lines = []
    for n, table in tables.items():
        counts = table.split.value_counts()
        title = (
            f"Synthetic, {n:,} locations ({counts['train']:,} train, {counts['val']:,} val; "
            f"scored on the same {counts['test']:,} test locations)"
        )
        lines += [*run_table(title, settings, [table], border, store, args.cache), ""]
    return lines


def real_part(args, rows: dict[str, Settings]) -> list[str]:
    settings = on_data(rows, args.sample)
    first = next(iter(settings.values()))
    border = load_border(first.data.border, first.data.country)
    locations, _ = load_locations([args.sample], border=border)
    every = pd.Series(True, index=locations.index)  # each is held out in one fold
    store = feature_store(first, locations, every, store_path(args.cache, first, args.sample))
    tables = fold_tables(locations, args.folds, first.split.fractions, args.seed)
    title = f"Real sample, {len(locations)} locations, {args.folds}-fold CV (fold seed {args.seed})"
    return run_table(title, settings, tables, border, store, args.cache)


def parts(args) -> list:
    """(part, its rows' settings) to run, every row checked before anything long starts."""
    todo = []
    if args.sizes:
        common = [*synthetic_overrides(args.synth_px, args.synth_epochs), *args.set]
        todo.append(
            (synthetic_part, row_settings(REPO / "configs" / "lumen.yaml", common, args.only))
        )
    if args.real and not (args.sample / "data.csv").is_file():
        print(f"skipped the real sample: not at {args.sample}")
    elif args.real:
        common = ["train.image_cache_dir=null", *args.set]
        rows = row_settings(REPO / "configs" / "sample.yaml", common, args.only, real_kind)
        todo.append((real_part, rows))
    return todo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 4000, 16000])
    parser.add_argument(
        "--locations", type=int, help="synthetic locations painted (default: the largest size)"
    )
    parser.add_argument("--synth-px", type=int, default=64, help="synthetic views' size")
    parser.add_argument("--synth-epochs", type=int, default=10, help="epochs of each head")
    parser.add_argument("--real", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the real sample's folds")
    parser.add_argument("--only", nargs="*", help=f"rows to run (default: all): {', '.join(ROWS)}")
    parser.add_argument("--set", action="append", default=[], help="override for every row")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads: the heads are small, and on a busy machine more threads wait on"
        " each other (a linear head's step took 13x longer with 2 threads than 1 at load 12)",
    )  # fmt: skip
    parser.add_argument(
        "--cache", type=Path, default=REPO / "cache" / "bench_methods",
        help="where the synthetic data and the frozen features are kept between runs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.locations = args.locations or max(args.sizes, default=0)
    if args.sizes and max(args.sizes) > args.locations:
        parser.error(f"--locations {args.locations} is fewer than the largest of --sizes")
    unknown = sorted(set(args.only or []) - set(ROWS))
    if unknown:
        parser.error(f"--only {unknown[0]!r}: no such row (rows: {', '.join(ROWS)})")
    if any(n < 20 for n in args.sizes) or args.folds < 2:
        parser.error("--sizes need at least 20 locations each and --folds at least 2")
    own_weights = any(item.startswith("train.weights=") for item in args.set)
    if not WEIGHTS.is_file() and not own_weights:
        parser.error(f"{WEIGHTS} is missing: run `make sample-weights` first")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lines = []
    try:
        for part, rows in parts(args):
            lines += part(args, rows)
    except UserError as exc:
        print(f"bench_methods: {exc}", file=sys.stderr)
        return 2
    print()
    print("\n".join(lines))
    print(f"\nbench_methods: {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
