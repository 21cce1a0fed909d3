"""Server benchmark: requests/s of `geoguesser serve` on the CPU, one pass per request vs batched.

Saves an untrained model (its speed is that of a trained one), starts `geoguesser serve`
twice as its own process, once with micro-batching off (--max-batch 1: every request is its
own forward pass, the naive way) and once as shipped (requests gathered for a few ms into
one pass), and has a growing number of concurrent clients post four 640 px JPEG views each,
as fast as answers come back. Prints a Markdown table and the batched / single ratio per
concurrency. Usage: python benchmarks/bench_serve.py [--backbone resnet18] [--clients 1 4 16 32]

With --memory it measures instead the server's peak memory (VmHWM, its own process's high-water
RSS) with 1 and with 32 concurrent clients each posting four worst-case photographs: PNGs just
under the largest size that server accepts (PNG has no reduced-scale decoding, unlike JPEG).
Each measurement is a fresh server process, so each peak is its own. --server-lib DIR runs
the server from another copy of lib/ (e.g. `git archive main lib | tar -x -C /tmp/before`),
to compare with the code before a change; its limits are read from that copy.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import socket
import subprocess
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
    from geoguesser.config import TrainSettings
    from geoguesser.data.enrich import prepare
    from geoguesser.data.normalization import IMAGENET_MEAN, IMAGENET_STD
    from geoguesser.geo.borders import load_border
    from geoguesser.geo.sampling import sample_uniform
    from geoguesser.geo.splits import split_locations
    from geoguesser.model.checkpoint import write_checkpoint
    from geoguesser.model.geography import Geography
    from geoguesser.model.locator import GeoLocator

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


def server_limits() -> tuple[int, int]:
    """(largest declared, largest decoded) pixels per image of the server started from here."""
    code = (
        "from geoguesser.serve import limits as s; "
        "print(s.MAX_PIXELS, getattr(s, 'MAX_DECODED_PIXELS', s.MAX_PIXELS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    declared, decoded = map(int, out.stdout.split())
    return declared, decoded


def worst_case_views(pixels: int) -> list:
    """Four copies of an RGB PNG just under `pixels`: small to send, large to decode."""
    side = math.isqrt(pixels) - 1
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    image = np.broadcast_to(ramp[None, :, None], (side, side, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=6)
    return [("images", (f"{i}.png", buffer.getvalue(), "image/png")) for i in range(4)]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc (Linux only)")


async def post_all(url: str, clients: int, requests_each: int, files: list) -> list[int]:
    """Statuses of `clients` clients each posting `requests_each` requests at once."""
    async with httpx.AsyncClient(base_url=url, timeout=1800) as client:

        async def one_client() -> list[int]:
            return [(await client.post("/predict", files=files)).status_code
                    for _ in range(requests_each)]  # fmt: skip

        results = await asyncio.gather(*(one_client() for _ in range(clients)))
    return [status for statuses in results for status in statuses]


def memory(args, checkpoint: Path) -> None:
    """Peak RSS of a fresh server per client count, each client posting worst-case images."""
    if args.server_lib:  # the servers started from here (not this process) run that copy
        os.environ["PYTHONPATH"] = str(Path(args.server_lib).resolve())
    declared, decoded = server_limits()
    pixels = min(declared, decoded)
    files = worst_case_views(pixels)
    side = math.isqrt(pixels) - 1
    size_kb = len(files[0][1][1]) / 1024
    rows = []
    for clients in args.clients:
        port = free_port()
        server = serve_in_background(checkpoint, port)
        try:
            start = peak_rss_mb(server.pid)
            statuses = asyncio.run(
                post_all(f"http://127.0.0.1:{port}", clients, args.memory_requests, files)
            )
            peak = peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
        rows.append((clients, start, peak, sorted(set(statuses))))
    source = args.server_lib or "this checkout"
    print(f"serve memory: {source}; {args.backbone} at {args.image_size} px; each request four")
    print(f"RGB PNGs of {side} x {side} px ({size_kb:.0f} kB each; that server's limits:")
    print(f"{declared:,} px declared, {decoded:,} px decoded); {args.memory_requests} request(s)")
    print("per client, all clients at once; peak = the server process's VmHWM")
    print()
    print("| concurrent clients | RSS after start, MB | peak RSS, MB | answers |")
    print("|---:|---:|---:|---|")
    for clients, start, peak, statuses in rows:
        print(f"| {clients} | {start:.0f} | {peak:.0f} | {statuses} |")
    if len(rows) > 1:
        print(f"\npeak with {rows[-1][0]} clients / peak with {rows[0][0]}: "
              f"{rows[-1][2] / rows[0][2]:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--requests", type=int, default=64, help="per concurrency level")
    parser.add_argument("--memory", action="store_true", help="peak memory, not requests/s")
    parser.add_argument("--memory-requests", type=int, default=1, help="per client, --memory")
    parser.add_argument("--server-lib", help="run the server from this copy of lib/ (--memory)")
    args = parser.parse_args()
    if args.memory and args.clients == parser.get_default("clients"):
        args.clients = [1, 32]

    files = views(0)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_model(Path(tmp) / "model.ckpt", args.backbone, args.image_size)
        if args.memory:
            memory(args, checkpoint)
            return
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
