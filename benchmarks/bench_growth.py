"""Growth benchmark: time and peak memory of each step as the number of locations quadruples.

For every size (default 1,000, 4,000, 16,000 and 64,000 locations) the steps run in order,
each in a fresh Python process, on the synthetic dataset that `synth` wrote at that size:

    synth     generate the dataset (32 px views by default)
    validate  check every row and image, as `geoguesser validate` does
    grid      grid cells from the training split, then the enriched table (steps 02 and 03)
    cache     build the image cache (every view decoded once into a memory-mapped array)
    train     one epoch of an untrained tinycnn with the image cache, then its test pass
    predict   predict every location with an untrained tinycnn (reading JPEGs)
    maps      metrics, the error map of the test split (views in each popup), the cell map

A step's time is measured inside its process, after imports and reading its inputs; its peak
memory is the process's maximum resident set (ru_maxrss from wait4), so one step's peak
never hides another's. `start MB` is the resident memory before the timed part: the
interpreter, the libraries and the inputs. Growth is each figure divided by the one at the
previous size: 4.0 per quadrupling is linear, 1.0 does not depend on the size. Memory
growth is that of `added MB`, the peak minus the start, because a fixed start of up to
0.8 GB (torch) would hide it.

`scenes` and `scenes-naive` compare describing the locations (synth's scene step) with the
way it was done before issue 15, where every location sliced whole per-call arrays and kept
them alive: quadratic, so it only runs up to 4,000 locations.

A step whose next size would take longer than `--budget` seconds (at 4.5x its last time)
is skipped from there on and marked in the table. Timings on a shared machine are noisy.
Usage: python benchmarks/bench_growth.py [--sizes 1000 4000 16000 64000] [--steps ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ["synth", "validate", "grid", "cache", "train", "predict", "maps"]
COMPARE = ["scenes", "scenes-naive"]
NAIVE_LIMIT = 4000  # scenes-naive at 16,000 locations would need about 30 GB


def naive_scenes(geography, lat, lon) -> list:
    """Landscape.scenes before issue 15, verbatim: each location recomputes whole arrays."""
    import numpy as np

    from geoguesser.data.landscape import Scene, _sigmoid
    from geoguesser.data.layout import VIEWS
    from geoguesser.geo.coords import to_projected

    self = geography
    x, y = to_projected(lat, lon, self.crs)
    here = np.stack([x, y], axis=1) / 1000.0
    n = len(here)
    heading = np.radians(np.array(VIEWS, dtype=float))
    step = np.stack([np.sin(heading), np.cos(heading)], axis=1)
    near = (here[:, None, :] + 2.0 * step[None]).reshape(-1, 2)
    far = (here[:, None, :] + 8.0 * step[None]).reshape(-1, 2)
    dist, bearing = self.coast_distance(here)
    near_dist, _ = self.coast_distance(near)
    inland = 1 - np.exp(-near_dist / 20.0)
    elev_near = self.elevation(near)
    urban = self.urban(near) * 1.2
    lon_near = np.repeat(lon, 4)
    lat_near = np.repeat(lat, 4)
    slavonia = _sigmoid((lon_near - 17.0) / 0.25) * _sigmoid((lat_near - 44.95) / 0.1)
    forest = np.clip(0.1 + 1.1 * elev_near * np.sqrt(inland) + 0.25 * inland * (1 - slavonia), 0, 1)
    karst = np.clip((1 - inland) * (0.7 + 0.6 * elev_near), 0, 1)
    field = np.clip(inland * (1 - elev_near) * (0.3 + 0.9 * slavonia), 0, 1)
    total = forest + karst + field + 1e-6
    open_land = np.clip(1 - urban, 0, 1)
    facing = np.cos(heading[None] - np.radians(bearing)[:, None])
    sea = np.clip(facing, 0, 1) ** 1.5 * np.exp(-dist[:, None] / 10.0)
    ridge = np.clip(self.elevation(far) - 0.4 * self.elevation(here).repeat(4) + 0.1, 0, 1)
    coastal = np.exp(-dist / 25.0)
    shape = (n, 4)
    return [
        Scene(
            ridge=ridge.reshape(shape)[i],
            sea=sea[i],
            forest=(forest / total * open_land).reshape(shape)[i],
            field=(field / total * open_land).reshape(shape)[i],
            karst=(karst / total * open_land).reshape(shape)[i],
            urban=np.clip(urban, 0, 1).reshape(shape)[i],
            coastal=float(coastal[i]),
            slavonia=float(slavonia.reshape(shape)[i, 0]),
        )
        for i in range(n)
    ]


def resident_mb() -> float:
    """This process's current resident memory (Linux), in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_step(step: str, n: int, work: Path, image_size: int) -> dict:
    """Do one step in this (fresh) process; returns the timed seconds and the start memory."""
    import numpy as np
    import pandas as pd

    from geoguesser.config import TrainSettings
    from geoguesser.geo.borders import load_border, load_coast

    dataset = work / "ds"
    border = load_border()
    info: dict = {}

    def inputs():
        from geoguesser.geo.coords import MinMaxScaler
        from geoguesser.geo.grid import read_cells

        table = pd.read_csv(work / "enriched.csv", dtype={"uuid": str})
        scaler = MinMaxScaler.from_json((work / "scaler.json").read_text())
        return table, read_cells(work / "cells.geojson"), scaler

    if step == "synth":
        from geoguesser.data.synthetic import generate

        start_mb, start = resident_mb(), time.perf_counter()
        generate(dataset, n, image_size, seed=0, progress=False)
    elif step in COMPARE:
        from geoguesser.data.landscape import Landscape

        geography = Landscape(border, load_coast())
        lat, lon = geography.sample(n, np.random.default_rng(0))
        start_mb, start = resident_mb(), time.perf_counter()
        if step == "scenes":  # as synth consumes them: one at a time
            count = sum(1 for _ in geography.iter_scenes(lat, lon))
        else:
            count = len(naive_scenes(geography, lat, lon))
        assert count == n
    elif step == "validate":
        from geoguesser.data.validate import validate

        start_mb, start = resident_mb(), time.perf_counter()
        report = validate([dataset], border=border)
        assert report.ok, report.problems[:3]
    elif step == "grid":
        from geoguesser.atomic import write_csv, write_text
        from geoguesser.data.enrich import prepare
        from geoguesser.data.validate import load_locations
        from geoguesser.geo.grid import write_cells
        from geoguesser.geo.splits import split_locations

        locations, _ = load_locations([dataset], border=border, check_images=False)
        locations = split_locations(locations, seed=0)
        start_mb, start = resident_mb(), time.perf_counter()
        table, cells, scaler = prepare(locations, border, cell_km=50)
        write_csv(table, work / "enriched.csv")
        write_cells(cells, work / "cells.geojson")
        write_text(work / "scaler.json", scaler.to_json())
    elif step == "cache":
        from geoguesser.data.image_cache import ImageCache

        uuids = pd.read_csv(dataset / "data.csv", dtype={"uuid": str}).uuid.tolist()
        start_mb, start = resident_mb(), time.perf_counter()
        cache = ImageCache.open(work / "cache", dataset, uuids, image_size, progress=False)
        info["cache_mb"] = cache.array.nbytes / 2**20
    elif step == "train":
        from geoguesser.training.fit import train

        table, cells, scaler = inputs()
        config = TrainSettings(
            backbone="tinycnn", image_size=image_size, batch_size=64, num_workers=0,
            max_epochs=1, freeze_epochs=0, image_cache_dir=str(work / "cache"),
            progress_bar=False, accelerator="cpu", devices=1, scheduler="none",
        )  # fmt: skip
        start_mb, start = resident_mb(), time.perf_counter()
        train(config, table, cells, scaler, work / "run", border)
    elif step == "predict":
        from geoguesser.atomic import write_csv
        from geoguesser.data.normalization import IMAGENET_MEAN, IMAGENET_STD
        from geoguesser.inference.predict import predict_table
        from geoguesser.model.geography import Geography
        from geoguesser.model.locator import GeoLocator

        table, cells, scaler = inputs()
        settings = TrainSettings(backbone="tinycnn", image_size=image_size)
        geography = Geography.of(cells, scaler, border)
        model = GeoLocator(geography, settings, IMAGENET_MEAN, IMAGENET_STD)
        start_mb, start = resident_mb(), time.perf_counter()
        predictions = predict_table(model.eval(), table, device="cpu", progress=False)
        write_csv(predictions, work / "predictions.csv")
    elif step == "maps":
        from geoguesser.analysis.maps import cell_error_map, error_map
        from geoguesser.analysis.report import run_metrics
        from geoguesser.geo.borders import bbox_diagonal_km

        table, cells, _ = inputs()
        predictions = pd.read_csv(work / "predictions.csv", dtype={"uuid": str})
        start_mb, start = resident_mb(), time.perf_counter()
        run_metrics(predictions, table, cells, bbox_diagonal_km(border), cells.attrs["crs"])
        test = predictions[predictions.split == "test"]
        directories = dict(zip(table.uuid, table.dataset_dir, strict=True))
        error_map(test, border, work / "maps" / "errors.html", dataset_dirs=directories)
        cell_error_map(cells, predictions, border, work / "maps" / "cells.html")
        info["map_mb"] = (work / "maps" / "errors.html").stat().st_size / 2**20
    else:
        raise ValueError(f"unknown step {step}")
    return {"seconds": time.perf_counter() - start, "start_mb": start_mb, **info}


def run_measured(command: list[str], cwd: Path | None = None) -> tuple[str, float, float]:
    """Run a command; its standard output, its peak resident memory in MB and its CPU seconds.

    wait4 reports the largest resident set of the process and of the children it waited
    for (a notebook kernel, say): the most any single process of it held. Linux also counts
    the parent's resident set at the moment of the fork, so the caller must stay small
    (import nothing heavy) for the figure to be the child's own. Its standard error is
    shown only when it fails.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, log = out.read(), err.read()
    if process.returncode != 0:
        sys.stderr.write(log)
        raise SystemExit(f"{' '.join(command[:4])}... failed (exit {process.returncode})")
    return text, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # kB on Linux


def measure(step: str, n: int, work: Path, image_size: int) -> dict:
    """Run one step in a child process; add its peak resident memory."""
    command = [sys.executable, __file__, "--child", step, "--sizes", str(n)]
    command += ["--work", str(work), "--image-size", str(image_size)]
    text, peak_mb, _ = run_measured(command)
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_mb"] = peak_mb
    result["added_mb"] = max(peak_mb - result["start_mb"], 0.1)
    return result


def growth(rows: list[dict], row: dict, key: str) -> str:
    earlier = [r for r in rows if r["step"] == row["step"] and r["n"] < row["n"] and key in r]
    if not earlier:
        return ""
    previous = earlier[-1]
    factor = row["n"] / previous["n"]
    ratio = row[key] / previous[key]
    return f"{ratio:.1f}x" if factor == 4 else f"{ratio:.1f}x per {factor:g}x"


def table(rows: list[dict], skipped: dict[str, int]) -> str:
    lines = [
        "| step | locations | time s | time growth | peak MB | added MB | added growth | notes |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for step in dict.fromkeys(r["step"] for r in rows):
        for row in [r for r in rows if r["step"] == step]:
            notes = []
            if "cache_mb" in row:
                notes.append(f"cache {row['cache_mb']:.0f} MB")
            if "map_mb" in row:
                notes.append(f"errors.html {row['map_mb']:.1f} MB")
            lines.append(
                f"| {step} | {row['n']:,} | {row['seconds']:.2f} | {growth(rows, row, 'seconds')}"
                f" | {row['peak_mb']:.0f} | {row['added_mb']:.0f}"
                f" | {growth(rows, row, 'added_mb')} | {', '.join(notes)} |"
            )
        if step in skipped:
            lines.append(f"| {step} | {skipped[step]:,} | skipped: over budget | | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    parser.add_argument("--steps", nargs="+", default=STEPS + COMPARE)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds per step and size")
    parser.add_argument("--work", type=Path, help="where datasets go (default: a temporary dir)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_step(args.child, args.sizes[0], args.work, args.image_size)))
        return
    root = Path(tempfile.mkdtemp(prefix="bench-growth-", dir=args.work))
    rows: list[dict] = []
    skipped: dict[str, int] = {}
    try:
        for n in sorted(args.sizes):
            work = root / str(n)
            work.mkdir()
            for step in args.steps:
                if step in skipped or (step == "scenes-naive" and n > NAIVE_LIMIT):
                    continue
                last = [r for r in rows if r["step"] == step]
                needs_synth = step not in COMPARE and step != "synth"
                if (last and last[-1]["seconds"] * 4.5 > args.budget) or (
                    needs_synth and "synth" in skipped
                ):
                    skipped[step] = n
                    continue
                rows.append({"step": step, "n": n, **measure(step, n, work, args.image_size)})
                row = rows[-1]
                print(
                    f"{step:>13} {n:>6}: {row['seconds']:7.2f} s {row['peak_mb']:6.0f} MB peak",
                    file=sys.stderr,
                    flush=True,
                )
            shutil.rmtree(work)  # 64,000 locations are a quarter million files
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{os.cpu_count()} CPU cores, {args.image_size} px views; each step in a fresh process")
    print()
    print(table(rows, skipped))
    print()
    for n in sorted(args.sizes):
        pair = {r["step"]: r for r in rows if r["n"] == n and r["step"] in COMPARE}
        if len(pair) == 2:
            fast, slow = pair["scenes"], pair["scenes-naive"]
            print(
                f"scenes of {n:,} locations, the way before issue 15 against streaming: "
                f"{slow['seconds'] / fast['seconds']:.1f}x the time, "
                f"{slow['added_mb'] / fast['added_mb']:.0f}x the added memory"
            )


if __name__ == "__main__":
    main()
