"""Deterministic train/val/test splits: random, or spatially blocked.

Street View points come in runs along the same road, a few hundred metres apart; a random
split puts such neighbours on both sides and flatters validation. The blocked split sends
whole square blocks of the projected plane to one split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from geoguesser.errors import UserError
from geoguesser.geo.coords import DEFAULT_CRS, to_projected

SPLITS = ("train", "val", "test")


def _check_fractions(fractions: Sequence[float], dataset_frac: float) -> np.ndarray:
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise UserError(
            "split fractions must be three non-negative numbers summing to 1,"
            f" got {list(fractions)}"
        )
    if not 0 < dataset_frac <= 1:
        raise UserError(f"dataset_frac must be in (0, 1], got {dataset_frac}")
    return fractions


def _subsample(
    locations: pd.DataFrame, dataset_frac: float, rng: np.random.Generator
) -> pd.DataFrame:
    # Sort first so that the result does not depend on the order the datasets were listed in.
    ordered = locations.sort_values("uuid", kind="stable").reset_index(drop=True)
    keep = max(1, round(dataset_frac * len(ordered)))
    chosen = np.sort(rng.permutation(len(ordered))[:keep])
    return ordered.iloc[chosen].reset_index(drop=True)


def split_locations(
    locations: pd.DataFrame,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    dataset_frac: float = 1.0,
    block_km: float | None = None,
    crs: str = DEFAULT_CRS,
) -> pd.DataFrame:
    """A copy of `locations` (a `dataset_frac` share of them) with a `split` column.

    With `block_km`, blocks of that size in the projected CRS are shuffled and handed out
    whole until each split has its share of locations.
    """
    fractions = _check_fractions(fractions, dataset_frac)
    rng = np.random.default_rng(seed)
    frame = _subsample(locations, dataset_frac, rng)
    n = len(frame)
    bounds = np.cumsum(fractions)[:2] * n
    if block_km is None:
        rank = np.empty(n, dtype=float)
        rank[rng.permutation(n)] = np.arange(n)
        position = rank + 0.5
    else:
        if block_km <= 0:
            raise UserError(f"block_km must be positive, got {block_km}")
        x, y = to_projected(frame.latitude.to_numpy(), frame.longitude.to_numpy(), crs)
        size = block_km * 1000.0
        keys = np.floor(x / size).astype(np.int64) * 1_000_003 + np.floor(y / size).astype(np.int64)
        blocks, block_of, counts = np.unique(keys, return_inverse=True, return_counts=True)
        order = rng.permutation(len(blocks))
        # A block's position is the middle of its run of locations in the shuffled order.
        ends = np.cumsum(counts[order])
        middle = np.empty(len(blocks), dtype=float)
        middle[order] = ends - counts[order] / 2
        position = middle[block_of]
    split_index = np.searchsorted(bounds, position, side="right")
    return frame.assign(split=np.asarray(SPLITS, dtype=object)[split_index])
