"""Training throughput: images per second through a full training step, and whether the
loader keeps up.

Writes a synthetic dataset at 640 px (the Street View size), builds the project's data
module over it with the image cache, and times training steps (forward, loss, backward,
optimizer step; backbone trainable) of the project's GeoLocator twice on the same batches:
fed by the data module's train loader, and fed from batches already in memory (the naive
upper bound: no loading at all). The ratio says how much of the GPU (or CPU) the loader
leaves idle: 1.0 means the loader costs nothing.

Usage: python benchmarks/bench_train_step.py [--backbone timm/efficientnet_lite0]
       [--image-size 224] [--precision 32-true] [--batch-size 8] [--batches 4]
On a GPU: --backbone resnext101_32x8d --precision bf16-mixed --channels-last
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

from geoguesser.config import PRECISIONS, TrainSettings
from geoguesser.data.datamodule import GeoDataModule
from geoguesser.data.enrich import prepare
from geoguesser.data.synthetic import generate
from geoguesser.data.validate import load_locations
from geoguesser.geo.borders import load_border
from geoguesser.geo.splits import split_locations
from geoguesser.model.geography import Geography
from geoguesser.model.locator import GeoLocator

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def images_per_second(model, batches, device, precision: str, warmup: int = 1) -> float:
    """Training steps over `batches` (an iterable: a loader, or a list in memory)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = AUTOCAST.get(precision)
    count, start = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, count = time.perf_counter(), 0
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            loss = model.loss(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += batch["images"].shape[0] * batch["images"].shape[1]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="timm/efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--precision", default="32-true", choices=PRECISIONS)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8, help="locations (x4 views)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches (after one warm-up)")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    locations = args.batch_size * (args.batches + 1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = generate(tmp / "ds", int(locations / 0.9) + 2, image_size=640, progress=False)
        border = load_border()
        frame, _ = load_locations([root], border=border)
        frame = split_locations(frame, fractions=(0.9, 0.1, 0.0), seed=0)
        table, cells, scaler = prepare(frame, border, cell_km=50)
        settings = TrainSettings(
            backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size,
            num_workers=args.workers, image_cache_dir=str(tmp / "cache"), freeze_epochs=0,
            precision=args.precision, channels_last=args.channels_last, accelerator="auto",
        )  # fmt: skip
        datamodule = GeoDataModule(table, settings)
        datamodule.setup("fit")
        model = GeoLocator(Geography.of(cells, scaler, border), settings, datamodule.mean,
                           datamodule.std).to(device).train()  # fmt: skip
        if args.precision == "bf16-true":
            model = model.to(torch.bfloat16)
        loader = datamodule.train_dataloader()
        in_memory = list(loader)  # the same batches, decoded and collated beforehand
        fed = images_per_second(model, loader, device, args.precision)
        ideal = images_per_second(model, in_memory, device, args.precision)

    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"training step: {args.backbone} at {args.image_size} px, {args.precision}"
        f"{', channels_last' if args.channels_last else ''}, batch {args.batch_size} locations"
        f" ({4 * args.batch_size} images), {name}"
    )
    print(f"fed by the data module from the image cache: {fed:.1f} images/s")
    print(f"batches already in memory:                   {ideal:.1f} images/s")
    print(f"ratio (1.0: the loader keeps up): {fed / ideal:.2f}")


if __name__ == "__main__":
    main()
