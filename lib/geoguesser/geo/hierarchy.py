"""The coarser levels above the classes: which group of each level every class belongs to.

`train.hierarchy` adds a cross-entropy per coarser level (model/hierarchy_loss.py); this
module says what the levels are. A level is one array over the classes, in label order:
class label -> group id, dense from 0. Cells that know their ancestors carry integer columns
`parent_1` (the next coarser level), `parent_2` (the one above), ...; their values are the
ids of that level's groups (non-negative integers by contract; only equality matters), read
up to the first missing number. Square cells (columns `row`, `col`) carry none: level k then
groups the squares of each 2^k x 2^k block of the grid, (floor(row / 2^k), floor(col / 2^k)),
anchored at zero like the grid itself.

A level that merges no group of the level below is left out (its loss would repeat that
level's), and the levels stop below the first one with a single group (its loss is zero).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from geoguesser.geo.cell_frame import parent_columns
from geoguesser.geo.grid import kept_cells


def _candidates(classes: pd.DataFrame) -> Iterator[np.ndarray]:
    """Each coarser level's raw group keys over the classes, finest first."""
    parents = parent_columns(classes.columns)
    if parents:
        for name in parents:
            yield classes[name].to_numpy(dtype=np.int64)
        return
    if not {"row", "col"} <= set(classes.columns):
        return
    row, col = classes["row"].to_numpy(np.int64), classes["col"].to_numpy(np.int64)
    last = None
    for k in range(1, 63):
        keys = np.stack([row >> k, col >> k], axis=1)  # floor(row / 2^k), negatives too
        if last is not None and np.array_equal(keys, last):
            return  # blocks this big no longer change: rows on both sides of zero end as -1, 0
        yield keys
        last = keys


def levels(cells: pd.DataFrame, most: int | None = None) -> list[np.ndarray]:
    """The coarser levels of `cells` (step 02's cells; dropped ones are ignored), finest first.

    Each is an int64 array of the classes' group ids 0..G-1 (G shrinking level by level);
    at most `most` of them when given.
    """
    classes = kept_cells(cells)
    found: list[np.ndarray] = []
    previous = len(classes)
    for keys in _candidates(classes):
        if most is not None and len(found) >= most:
            break
        groups = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
        count = int(groups.max()) + 1 if len(groups) else 0
        if count <= 1:
            break
        if count < previous:
            found.append(groups)
            previous = count
    return found
