"""The figures step 05 draws, at the edges a run's settings can reach."""

from __future__ import annotations

import pandas as pd
from shapely.geometry import box

from geoguesser.analysis.plots import worst_figure

COLUMNS = ["uuid", "dataset_dir", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_km"]


def test_no_worst_rows_is_a_figure_saying_why_not_a_crash():
    # maps.worst: 0 once crashed step 05 (a grid of zero rows)
    fig = worst_figure(
        pd.DataFrame(columns=COLUMNS), box(13, 42, 20, 47), heading="Worst predictions",
        none="none shown: maps.worst is 0",
    )  # fmt: skip
    texts = [text.get_text() for ax in fig.axes for text in ax.texts]
    assert texts == ["none shown: maps.worst is 0"]
    assert fig._suptitle.get_text() == "Worst predictions"
