"""Requests gathered for a few milliseconds into one forward pass, on one model thread.

The model sees one batch instead of many single locations, on a single thread so passes
never fight for the cores.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from geoguesser.serve.answers import answer
from geoguesser.serve.limits import BATCH_WAIT_MS, MAX_BATCH
from geoguesser.serve.store import ModelStore

if TYPE_CHECKING:  # imported where used: torch is slow to import
    import torch


@dataclass
class Job:
    """One request waiting for a pass: its model, its views, where its answer goes."""

    name: str
    views: torch.Tensor  # (V, 3, H, W) uint8
    future: asyncio.Future


@dataclass
class MicroBatcher:
    """Collects requests for `wait_s` after the first (up to `max_batch`) into one pass.

    Requests for different models or numbers of views cannot share a tensor: each such group
    is its own pass. `batch_sizes` records every pass, for tests and benchmarks.
    """

    store: ModelStore
    top_k: int
    wait_s: float = BATCH_WAIT_MS / 1000
    max_batch: int = MAX_BATCH
    batch_sizes: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoguesser-model")

    async def submit(self, name: str, views: torch.Tensor) -> dict:
        if self.worker is None or self.worker.done():
            # Started inside the server's own event loop, on the first request.
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(Job(name, views, future))
        return await future

    async def _collect(self) -> list[Job]:
        jobs = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(jobs) < self.max_batch:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return jobs

    async def _serve(self) -> None:
        import torch

        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                groups.setdefault((job.name, job.views.shape[0]), []).append(job)
            for (name, n_views), group in groups.items():
                try:
                    model = self.store.get(name)
                    batch = torch.stack([job.views for job in group])
                    decoded = await loop.run_in_executor(
                        self.executor, lambda m=model, b=batch: m.locate(b, self.top_k)
                    )
                    self.batch_sizes.append(len(group))
                    for i, job in enumerate(group):
                        if not job.future.done():
                            job.future.set_result(answer(model, decoded, i, name, n_views))
                except Exception as error:  # a failed pass fails its requests, not the server
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(error)
