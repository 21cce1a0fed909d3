"""Sizing a LUMEN run: the disk and memory that 16,000 and 32,000 locations need, measured.

1. Image cache at 224 px: built for 1,000 and 4,000 synthetic locations; the file's size on
   disk per location, and what that makes for 16,000 and 32,000 (the cache is one dense
   uint8 array, so its size is exactly linear).
2. Frozen features of ResNeXt-101 (resnext101_32x8d): the feature size D measured on the
   network, and the bytes the feature store allocates for the 80/10/10 splits (float32,
   four views a location, held in host memory by every training process).
3. The pipeline at 16,000 locations: one synthetic dataset of 16,000 at 32 px, the demo
   config with one epoch, each notebook executed by papermill in a fresh process; its time
   and peak resident memory (the largest of papermill and the notebook's kernel).
Usage: python benchmarks/bench_sizing.py [--locations 16000] [--skip-pipeline]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_growth import run_measured

REPO = Path(__file__).resolve().parents[1]
GB = 1e9
SETUP_CHILD = """
import sys
from pathlib import Path
from geoguesser.config import load_settings
from geoguesser.workflow.runs import STEPS, prepare, record_invocation
run_dir, repo, overrides = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
settings = load_settings(repo / "configs" / "demo.yaml", overrides)
prepare(run_dir, 0, overwrite=False)
record_invocation(run_dir, settings, STEPS, None, overrides, repo)
print(" ".join(STEPS))
"""
STEP_CHILD = """
import sys
from pathlib import Path
import papermill
from geoguesser.workflow import pipeline
run_dir, step, notebooks = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
parameters = {"run_dir": str(run_dir), "config": str(run_dir / "config.yaml"), "overrides": []}
papermill.execute_notebook(
    str(notebooks / f"{step}.ipynb"), str(run_dir / f"{step}.ipynb"), parameters=parameters,
    kernel_name=pipeline.ensure_kernel(), cwd=str(notebooks), progress_bar=False,
)
"""


def image_cache(tmp: Path) -> list[str]:
    import pandas as pd

    from geoguesser.data.image_cache import ImageCache
    from geoguesser.data.synthetic import generate

    root = generate(tmp / "cache-ds", 4000, image_size=32, seed=0, progress=False)
    uuids = pd.read_csv(root / "data.csv", dtype={"uuid": str}).uuid.tolist()
    lines, per_location = [], []
    for n in (1000, 4000):
        start = time.perf_counter()
        cache = ImageCache.open(tmp / f"cache-{n}", root, uuids[:n], 224, progress=False)
        seconds = time.perf_counter() - start
        (path,) = (tmp / f"cache-{n}").glob("*.npy")
        on_disk = path.stat().st_blocks * 512
        per_location.append(on_disk / n)
        lines.append(
            f"image cache at 224 px, {n:,} locations: {on_disk / GB:.2f} GB on disk "
            f"({on_disk / n / 1e6:.3f} MB a location; array {cache.array.shape}), "
            f"built in {seconds:.0f} s from 32 px JPEGs"
        )
        del cache
    for n in (16000, 32000):
        lines.append(f"image cache at 224 px, {n:,} locations: {n * per_location[-1] / GB:.1f} GB")
    return lines


def frozen_features() -> list[str]:
    import torch

    from geoguesser.model.backbones import build_backbone, feature_size

    backbone = build_backbone("resnext101_32x8d", weights=None)
    dim = feature_size(backbone, 224, "resnext101_32x8d")
    lines = [f"resnext101_32x8d at 224 px: D = {dim} features a view, 4 views a location"]
    for n in (16000, 32000):
        # What model.features.backbone_features keeps for the train and val splits while frozen.
        sizes = {"train": int(0.8 * n), "val": int(0.1 * n)}
        held = {s: torch.empty((k, 4, dim), dtype=torch.float32) for s, k in sizes.items()}
        total = sum(t.numel() * t.element_size() for t in held.values())
        train = held["train"]
        lines.append(
            f"feature cache, {n:,} locations: train {train.numel() * train.element_size() / GB:.2f}"
            f" GB, train and val {total / GB:.2f} GB ({total / (0.9 * n) / 1e3:.1f} kB a location)"
        )
    return lines


def pipeline_steps(tmp: Path, n: int) -> list[str]:
    """Every process measured here is started from this one, which imports nothing heavy:
    a child's peak resident memory counts its parent's at the moment it was started."""
    dataset = tmp / "pipeline-ds"
    synth = [sys.executable, "-m", "geoguesser.cli", "synth", str(dataset)]
    synth += ["--locations", str(n), "--image-size", "32"]
    start = time.perf_counter()
    _, peak_mb, cpu = run_measured(synth)
    lines = [
        f"geoguesser synth, {n:,} locations at 32 px: {time.perf_counter() - start:.0f} s "
        f"({cpu:.0f} s of CPU), peak {peak_mb / 1024:.2f} GB"
    ]
    # The run folder and its config.yaml as `geoguesser run` makes them, so that each step
    # can run in a process of its own (one command, one peak memory figure); made in a
    # child too, since this process must stay small (see the docstring).
    run_dir = tmp / "runs" / f"sizing-{n}"
    overrides = [f"name={run_dir.name}", f"data.dataset_dirs=[{dataset}]", "train.image_size=32"]
    overrides += ["train.max_epochs=1", f"train.image_cache_dir={tmp / 'cache'}"]
    setup = [sys.executable, "-c", SETUP_CHILD, str(run_dir), str(REPO), *overrides]
    steps = subprocess.run(setup, check=True, capture_output=True, text=True).stdout.split()
    for step in steps:
        command = [sys.executable, "-c", STEP_CHILD, str(run_dir), step, str(REPO / "notebooks")]
        start = time.perf_counter()
        _, peak_mb, cpu = run_measured(command)
        lines.append(
            f"pipeline step {step}, {n:,} locations: {time.perf_counter() - start:.0f} s "
            f"({cpu:.0f} s of CPU), peak {peak_mb / 1024:.2f} GB"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=16000)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--part", choices=["cache", "features"], help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "cache":
        print("\n".join(image_cache(args.tmp)))
        return
    if args.part == "features":
        print("\n".join(frozen_features()))
        return
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        for part in ("cache", "features"):
            command = [sys.executable, __file__, "--part", part, "--tmp", tmp]
            lines += run_measured(command)[0].strip().splitlines()
        if not args.skip_pipeline:
            lines += pipeline_steps(Path(tmp), args.locations)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
