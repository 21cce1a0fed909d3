"""Server benchmark: requests/s of `geoguesser serve` on the CPU, one pass per request vs batched.

Saves an untrained model (its speed is that of a trained one), starts `geoguesser serve`
twice as its own process, once with micro-batching off (--max-batch 1: every request is its
own forward pass, the naive way) and once as shipped (requests gathered for a few ms into
one pass), and has a growing number of concurrent clients post four 640 px JPEG views each,
as fast as answers come back. Prints a Markdown table and the batched / single ratio per
concurrency. Usage: python benchmarks/bench_serve.py [--backbone resnet18] [--clients 1 4 16 32]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import serve_in_background  # noqa: E402


def save_model(path: Path, backbone: str, image_size: int) -> Path:
    """An untrained classifier over the shipped border's 50 km grid, saved as training does."""
    from geoguesser.backbones import IMAGENET_MEAN, IMAGENET_STD
    from geoguesser.borders import load_border
    from geoguesser.config import TrainSettings
    from geoguesser.enrich import prepare
    from geoguesser.geography import Geography
    from geoguesser.model import GeoLocator, write_checkpoint
    from geoguesser.sampling import sample_uniform
    from geoguesser.splits import split_locations

    border = load_border()
    points = sample_uniform(border, 400, seed=0)
    points = points.assign(uuid=[f"p{i}" for i in range(len(points))], dataset_dir=".")
    _, cells, scaler = prepare(split_locations(points, (0.8, 0.1, 0.1), seed=0), border, 50)
    settings = TrainSettings(
        backbone=backbone, image_size=image_size, fusion="mean", accelerator="cpu", devices=1
    )
    model = GeoLocator(Geography.of(cells, scaler, border), settings, IMAGENET_MEAN, IMAGENET_STD)
    return write_checkpoint(model, path)


def views(seed: int) -> list:
    rng = np.random.default_rng(seed)
    files = []
    for i in range(4):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, (640, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        files.append(("images", (f"{i}.jpg", buffer.getvalue(), "image/jpeg")))
    return files


async def load(url: str, clients: int, requests_each: int, files: list) -> float:
    """Requests per second with `clients` posting back to back."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one_client() -> None:
            for _ in range(requests_each):
                response = await client.post("/predict", files=files)
                response.raise_for_status()

        await client.post("/predict", files=files)  # loads the model: not timed
        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return clients * requests_each / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--requests", type=int, default=64, help="per concurrency level")
    args = parser.parse_args()

    files = views(0)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_model(Path(tmp) / "model.ckpt", args.backbone, args.image_size)
        rates = {}
        for mode, extra in (("single", ["--max-batch", "1"]), ("batched", [])):
            port = free_port()
            server = serve_in_background(checkpoint, port, extra)
            try:
                for clients in args.clients:
                    each = max(1, args.requests // clients)
                    rates[mode, clients] = asyncio.run(
                        load(f"http://127.0.0.1:{port}", clients, each, files)
                    )
            finally:
                server.terminate()
                server.wait(timeout=30)

    threads = torch.get_num_threads()
    print(f"serve: {args.backbone} at {args.image_size} px, 4 views of 640 px JPEG per request,")
    print(f"CPU ({threads} torch threads), {args.requests} requests per level")
    print()
    print("| concurrent clients | single requests/s | batched requests/s | batched / single |")
    print("|---:|---:|---:|---:|")
    for clients in args.clients:
        single, batched = rates["single", clients], rates["batched", clients]
        print(f"| {clients} | {single:.1f} | {batched:.1f} | {batched / single:.2f}x |")


if __name__ == "__main__":
    main()
