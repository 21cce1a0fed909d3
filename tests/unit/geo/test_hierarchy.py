"""The cells' coarser levels: 2^k blocks of squares, or the parent columns cells carry."""

import numpy as np
import pandas as pd

from geoguesser.geo.borders import load_border
from geoguesser.geo.grid import make_cells
from geoguesser.geo.hierarchy import levels


def squares(rows, cols, labels=None) -> pd.DataFrame:
    labels = list(range(len(rows))) if labels is None else labels
    return pd.DataFrame({"label": labels, "row": rows, "col": cols})


def test_squares_group_by_blocks_of_two_then_four_until_one_group():
    # A 4 x 4 grid, labels in reading order: level 1 is its four 2x2 blocks, level 2 one
    # block of all sixteen, which is not a level.
    row, col = np.divmod(np.arange(16), 4)
    found = levels(squares(row, col))
    assert len(found) == 1
    expected = (row // 2) * 2 + col // 2  # the blocks in the same reading order
    assert found[0].tolist() == expected.tolist()


def test_blocks_follow_the_grid_anchor_and_negative_rows_floor():
    # Rows -1 and 0 lie in different 2x2 blocks (floor(-1 / 2) = -1); 4x4 blocks still two.
    found = levels(squares([-1, 0, 1, 2, 5], [0, 0, 0, 0, 0]))
    expected = [[0, 1, 1, 2, 3], [0, 1, 1, 1, 2], [0, 1, 1, 1, 1]]
    assert [level.tolist() for level in found] == expected
    assert all(level.dtype == np.int64 for level in found)


def test_levels_follow_labels_ignore_dropped_cells_and_stop_at_the_number_asked():
    # Shuffled rows, one dropped cell (label -1) far away that must not make a group.
    cells = squares([0, 9, 1, 3, 2], [0, 40, 1, 3, 2], labels=[2, -1, 0, 3, 1])
    found = levels(cells)  # classes in label order: (1,1), (2,2), (0,0), (3,3)
    assert [level.tolist() for level in found] == [[0, 1, 0, 1]]
    assert levels(cells, most=0) == []
    wide = squares(*np.divmod(np.arange(64), 8))
    assert [len(set(level)) for level in levels(wide)] == [16, 4]
    assert [len(set(level)) for level in levels(wide, most=1)] == [16]


def test_a_level_that_merges_nothing_is_left_out():
    # Squares two apart: 2x2 blocks hold one square each, 4x4 blocks merge them in pairs.
    found = levels(squares([0, 0, 0, 0], [0, 2, 4, 6]))
    assert [level.tolist() for level in found] == [[0, 0, 1, 1]]


def test_parent_columns_are_honoured_and_made_dense():
    cells = squares([0, 0, 0, 0, 0], [0, 1, 2, 3, 4])
    cells["parent_1"] = [7, 7, 30, 30, 12]  # any group ids of that level
    cells["parent_2"] = [5, 5, 5, 5, 1]
    cells["parent_4"] = [0, 0, 0, 0, 0]  # not read: parent_3 is missing
    found = levels(cells)
    assert [level.tolist() for level in found] == [[0, 0, 2, 2, 1], [1, 1, 1, 1, 0]]


def test_parent_columns_replace_blocks_and_stop_at_one_group():
    cells = squares(*np.divmod(np.arange(16), 4))
    cells["parent_1"] = [0] * 8 + [1] * 8
    cells["parent_2"] = [0] * 16
    assert [level.tolist() for level in levels(cells)] == [[0] * 8 + [1] * 8]


def test_cells_without_rows_or_parents_have_no_levels():
    assert levels(pd.DataFrame({"label": [0, 1, 2]})) == []


def test_the_grid_of_step_02_has_levels_over_its_classes():
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(45.0, 46.0, 40), rng.uniform(15.0, 18.5, 40)
    cells = make_cells(load_border(), lat, lon, cell_km=25)
    n_classes = int((cells.label >= 0).sum())
    found = levels(cells)
    assert found and all(len(level) == n_classes for level in found)
    counts = [int(level.max()) + 1 for level in found]
    assert counts == sorted(counts, reverse=True) and counts[0] < n_classes and counts[-1] > 1
    for finer, coarser in zip([np.arange(n_classes), *found], found, strict=False):
        # nested: classes in one group of a level share their group above
        assert all(len(set(coarser[finer == g])) == 1 for g in np.unique(finer))
