"""The order and the shares of locations: a shuffle reproducible by epoch, disjoint eval shards.

Both are DistributedSamplers, so that Lightning leaves them in place under DDP instead of
wrapping the loaders in samplers of its own.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset, DistributedSampler


class EpochShuffle(DistributedSampler):
    """A permutation decided by (seed, epoch) alone, however often the loader is iterated;
    process `rank` of `world` takes every world-th location of it.

    A DataLoader's own generator advances each time an iterator is made (Lightning makes an
    extra one when it resumes a fit), so the order would depend on history. Under DDP the
    permutation is padded with its first locations to a multiple of `world` (every process
    must take as many steps); being a DistributedSampler, Lightning leaves it in place
    rather than wrapping it in a sampler of its own, whose order differed after a resume.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1):
        # No DistributedSampler.__init__: it wants a dataset and an initialized process group.
        self.size, self.seed, self.rank, self.num_replicas = size, seed, rank, world
        self.epoch = 0  # Lightning's set_epoch writes here; the seed already holds the epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.num_replicas)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.size, generator=generator).tolist()
        order += order[: len(self) * self.num_replicas - self.size]
        return iter(order[self.rank :: self.num_replicas])


class EvalShard(DistributedSampler):
    """Process r of W evaluates locations r, r + W, r + 2W, ...: each exactly once in all.

    Lightning's own distributed sampler pads the shards with repeated locations so that
    every process gets as many; validation and test would count those twice. Being a
    DistributedSampler, this one is left in place by Lightning; the shards may differ by
    one location, and metrics.GeoErrors gathers shards of any length.
    """

    def __init__(self, dataset: Dataset):
        super().__init__(dataset, shuffle=False, drop_last=False)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))
