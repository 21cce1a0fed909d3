"""Matplotlib figures the notebooks show and the pipeline saves, fit for a paper.

Every mark has a legend entry or a colour bar, palettes are colour-blind safe (Okabe-Ito
for categories, viridis/plasma for quantities), and a figure about errors says in its
title which split, how many locations and the mean, and SYNTHETIC when the data is.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from shapely.geometry.base import BaseGeometry

from geoguesser.data.image_cache import decode_location
from geoguesser.data.layout import VIEWS
from geoguesser.style import (
    GREY,
    GUESS,
    INK,
    LAND,
    OKABE_ITO,
    OUTLINE,
    SPLIT_COLOURS,
    TRUTH,
    title,
)

VIEW_NAMES = ("N", "E", "S", "W")


def draw_border(border: BaseGeometry, ax) -> None:
    gpd.GeoSeries([border], crs="EPSG:4326").plot(
        ax=ax, color=LAND, edgecolor=OUTLINE, linewidth=0.6
    )


def locations_figure(table: pd.DataFrame, border: BaseGeometry, title: str = "Locations by split"):
    fig, ax = plt.subplots(figsize=(7, 6))
    draw_border(border, ax)
    for split, group in table.groupby("split"):
        ax.scatter(
            group.longitude,
            group.latitude,
            s=4,
            label=f"{split} ({len(group)})",
            c=SPLIT_COLOURS.get(split, INK),
        )
    ax.set(title=title, xlabel="longitude", ylabel="latitude")
    ax.legend(markerscale=3, title="split")
    return fig


def density_figure(table: pd.DataFrame, border: BaseGeometry, nearest_km, synthetic=False):
    """Locations per hexagon (with its colour bar) and distances to the nearest neighbour."""
    fig, (density, nearest) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    draw_border(border, density)
    cells = density.hexbin(
        table.longitude, table.latitude, gridsize=30, mincnt=1, cmap="viridis", bins="log"
    )
    fig.colorbar(cells, ax=density, label="locations per hexagon (log scale)")
    density.set(title=title("Density", synthetic=synthetic), xlabel="longitude", ylabel="latitude")
    nearest.hist(nearest_km, bins=40, color=OKABE_ITO[0])
    nearest.set(
        xlabel="distance to the nearest other location (km)",
        ylabel="locations",
        title=f"Nearest neighbour (median {np.median(nearest_km):.2f} km)",
    )
    return fig


def cells_axes(
    cells: gpd.GeoDataFrame, border: BaseGeometry, ax, centroids: bool = True, title: str = ""
) -> None:
    """The grid on its border: kept cells outlined, dropped cells hatched, centroids on top."""
    draw_border(border, ax)
    kept, dropped = cells[cells.label >= 0], cells[cells.label < 0]
    kept.boundary.plot(ax=ax, color=OKABE_ITO[0], linewidth=0.5)
    handles = [Patch(facecolor="none", edgecolor=OKABE_ITO[0], label=f"class cell ({len(kept)})")]
    if len(dropped):
        dropped.plot(ax=ax, facecolor=GREY, alpha=0.45, edgecolor="#666", hatch="///")
        handles.append(
            Patch(facecolor=GREY, alpha=0.45, hatch="///", label=f"dropped ({len(dropped)})")
        )
    if centroids:  # smallest last, so none hides another
        ax.scatter(kept.weighted_lon, kept.weighted_lat, s=22, c=OKABE_ITO[2], zorder=3)
        ax.scatter(kept.clipped_lon, kept.clipped_lat, s=12, c=OKABE_ITO[3], zorder=4)
        ax.scatter(
            kept.centroid_lon, kept.centroid_lat, s=28, c="k", marker="+", linewidths=1, zorder=5
        )
        handles += [
            Line2D([], [], ls="", marker="o", ms=5, color=OKABE_ITO[2], label="weighted centroid"),
            Line2D([], [], ls="", marker="o", ms=4, color=OKABE_ITO[3], label="clipped centroid"),
            Line2D([], [], ls="", marker="+", ms=6, color="k", label="centroid"),
        ]
    ax.legend(handles=handles, loc="lower left", fontsize=8)
    ax.set_title(title or f"{len(kept)} classes, {len(dropped)} cells dropped (no training data)")
    ax.set_axis_off()


def cells_beside_squares(cells: gpd.GeoDataFrame, squares: gpd.GeoDataFrame, border):
    """The chosen cells beside square ones, each class shaded by its training locations.

    The shade (log scale) shows what a kind other than squares is for: classes that hold
    similar numbers of examples where the data is dense and where it is sparse.
    """
    panels = [cells] if cells.attrs.get("kind", "square") == "square" else [cells, squares]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 6), squeeze=False)
    largest = max(int(panel.n_train.max()) for panel in panels)
    for ax, panel in zip(axes[0], panels, strict=True):
        draw_border(border, ax)
        kept = panel[panel.label >= 0]
        kept.plot(ax=ax, column=np.log10(kept.n_train), cmap="viridis", vmin=0,
                  vmax=np.log10(max(largest, 10)), edgecolor="white", linewidth=0.4)  # fmt: skip
        n = kept.n_train
        kind = panel.attrs.get("kind", "square")
        size = (
            f" {panel.attrs['cell_km']:g} km"
            if kind == "square" and panel.attrs.get("cell_km")
            else ""
        )
        ax.set_title(f"{kind}{size}: {len(kept)} classes; training locations per class"
                     f" {n.min()}-{n.max()} (median {n.median():.0f})", fontsize=9)  # fmt: skip
        ax.set_axis_off()
    bar = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, np.log10(max(largest, 10))))
    fig.colorbar(bar, ax=axes[0].tolist(), shrink=0.6, label="log10 training locations")
    return fig


def projection_figure(table: pd.DataFrame, crs: str, synthetic: bool = False):
    """Degrees and the projected plane side by side, points coloured by longitude.

    A continuous colour (with its bar) shows that the projection keeps every point's place
    among its neighbours; dozens of class labels cannot be told apart by colour.
    """
    fig, (geographic, projected) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    style = dict(s=2, c=table.longitude, cmap="viridis")
    geographic.scatter(table.longitude, table.latitude, **style)
    geographic.set(
        title=title("EPSG:4326 (degrees)", synthetic=synthetic),
        xlabel="longitude",
        ylabel="latitude",
    )
    points = projected.scatter(table.crs_x / 1000, table.crs_y / 1000, **style)
    projected.set(title=f"{crs} (km)", xlabel="x (km)", ylabel="y (km)", aspect="equal")
    fig.colorbar(points, ax=[geographic, projected], label="longitude (°)")
    return fig


def _draw_views(axes, row, size: int, caption: str, titled: bool) -> None:
    """One location's four views into the first four of `axes`, captioned under the first."""
    views = decode_location(row.dataset_dir, row.uuid, size)
    for j in range(len(VIEWS)):
        axes[j].imshow(views[j])
        axes[j].set_axis_off()
        axes[j].set_title(VIEW_NAMES[j] if titled else "", fontsize=9)
    axes[0].text(0, -0.08, caption, transform=axes[0].transAxes, fontsize=8, va="top")


def views_figure(rows: pd.DataFrame, size: int = 128, captions: list[str] | None = None):
    """Rows of four views (N, E, S, W) for the given locations (uuid, dataset_dir)."""
    n = len(rows)
    fig, axes = plt.subplots(n, 4, figsize=(8, 2.1 * n), squeeze=False)
    for i, row in enumerate(rows.itertuples(index=False)):
        _draw_views(axes[i], row, size, captions[i] if captions else row.uuid, titled=i == 0)
    fig.tight_layout()
    return fig


def worst_figure(
    rows: pd.DataFrame, border: BaseGeometry, size: int = 128, heading: str = "", none: str = ""
):
    """The worst predictions: each location's four views and a small map of truth and guess.

    rows: uuid, dataset_dir, true_lat, true_lon, pred_lat, pred_lon, error_km. With no rows
    (`maps.worst: 0`, an empty split) the figure says why (`none`) rather than failing, and
    it still replaces an earlier run's figure, which would otherwise stand as this run's.
    """
    n = len(rows)
    if n == 0:
        fig, blank = plt.subplots(figsize=(11, 1.2))
        blank.set_axis_off()
        blank.text(0.5, 0.5, none or "no predictions to show", ha="center", va="center")
        if heading:
            fig.suptitle(heading)
        return fig
    fig, axes = plt.subplots(
        n, 5, figsize=(11, 2.2 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.5]}
    )
    for i, row in enumerate(rows.itertuples(index=False)):
        caption = f"{row.uuid[:8]}: {row.error_km:.0f} km off"
        _draw_views(axes[i], row, size, caption, titled=i == 0)
        where = axes[i, 4]
        draw_border(border, where)
        where.plot([row.true_lon, row.pred_lon], [row.true_lat, row.pred_lat], c="#444", lw=1)
        where.scatter(row.true_lon, row.true_lat, s=30, c=TRUTH, zorder=3, label="truth")
        where.scatter(
            row.pred_lon, row.pred_lat, s=40, c=GUESS, marker="X", zorder=3, label="guess"
        )
        where.set_axis_off()
        if i == 0:
            where.legend(loc="upper right", fontsize=7)
    if heading:
        fig.suptitle(heading)
    fig.tight_layout()
    return fig


def error_figure(
    errors_by_name: dict[str, np.ndarray], split: str = "test", synthetic: bool = False
):
    """Histogram and cumulative share of errors, one curve per model or baseline.

    The title names the split, n and the mean of the first entry (the model).
    """
    fig, (hist, cumulative) = plt.subplots(1, 2, figsize=(11, 4))
    # An empty split draws empty axes with its n=0 in the title, never a crash.
    top = max((float(np.max(e)) for e in errors_by_name.values() if len(e)), default=1.0)
    bins = np.linspace(0, top, 40)
    for colour, (name, errors) in zip(OKABE_ITO, errors_by_name.items(), strict=False):
        label = f"{name} (mean {np.mean(errors):.1f} km)" if len(errors) else f"{name} (none)"
        hist.hist(errors, bins=bins, alpha=0.55, label=label, color=colour)
        ordered = np.sort(errors)
        cumulative.plot(
            ordered, np.arange(1, len(ordered) + 1) / len(ordered), label=label, color=colour
        )
    hist.set(xlabel="error (km)", ylabel="locations", title="Error histogram")
    cumulative.set(
        xlabel="error (km)",
        ylabel="share of locations within",
        title="Cumulative error",
        xscale="symlog",
    )
    for ax in (hist, cumulative):
        ax.legend(fontsize=8)
    first = next(iter(errors_by_name.values()))
    fig.suptitle(title("Errors", split, first, synthetic))
    fig.tight_layout()
    return fig


def calibration_bins(expected_km, actual_km, bins: int = 10) -> pd.DataFrame:
    """Locations in (at most) `bins` equal-count bins of expected error: means of both, count."""
    frame = pd.DataFrame({"expected_km": expected_km, "actual_km": actual_km}).dropna()
    n_bins = max(1, min(bins, len(frame)))
    bin_of = pd.qcut(frame.expected_km.rank(method="first"), n_bins, labels=False)
    grouped = frame.groupby(bin_of)
    return grouped.mean().assign(n=grouped.size()).reset_index(drop=True)


def calibration_figure(
    expected_km, actual_km, split: str = "val", spearman=None, synthetic: bool = False
):
    """Actual against expected error: each location a dot, equal-count bins' means a line.

    On the identity line the model's confidence means what it says; above it the model is
    over-confident (it errs more than it expects), below it under-confident.
    """
    expected_km, actual_km = np.asarray(expected_km, float), np.asarray(actual_km, float)
    binned = calibration_bins(expected_km, actual_km)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(expected_km, actual_km, s=6, alpha=0.35, color=GREY, label="one location")
    ax.plot(
        binned.expected_km,
        binned.actual_km,
        marker="o",
        color=OKABE_ITO[0],
        label=f"mean of {len(binned)} equal-count bins",
    )
    top = float(np.nanmax(np.concatenate([expected_km, actual_km]))) if len(actual_km) else 1.0
    ax.plot([0, top], [0, top], ls="--", color=OKABE_ITO[-1], lw=1, label="identity: as expected")
    rho = f", Spearman {spearman:.2f}" if spearman is not None else ""
    ax.set(
        xlabel="expected error (km), from the model's probabilities",
        ylabel="actual error (km)",
        title=title(f"Calibration{rho}", split, actual_km, synthetic),
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- training curves ------------------------------------------------------------------------


def read_scalars(tb_dir: str | Path) -> pd.DataFrame:
    """Every scalar logged to TensorBoard under `tb_dir`: tag, step, value (latest write wins).

    A resumed fit appends a new event file; for a step logged twice the later value is kept.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    frames = []
    for path in sorted(
        Path(tb_dir).rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime
    ):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags().get("scalars", []):
            frames.append(
                pd.DataFrame(
                    [(tag, e.step, e.value) for e in events.Scalars(tag)],
                    columns=["tag", "step", "value"],
                )
            )
    if not frames:
        return pd.DataFrame(columns=["tag", "step", "value"])
    scalars = pd.concat(frames, ignore_index=True)
    return scalars.drop_duplicates(["tag", "step"], keep="last").sort_values(["tag", "step"])


def training_figure(scalars: pd.DataFrame, synthetic: bool = False):
    """Loss per epoch (train and val) and validation mean and median km, against epochs."""
    epochs = scalars[scalars.tag == "epoch"].groupby("step").value.last()

    def series(tag: str) -> pd.Series:
        values = scalars[scalars.tag == tag].set_index("step").value
        # a value logged at a step belongs to the epoch running at that step
        index = epochs.reindex(values.index, method="ffill") if len(epochs) else values.index
        return pd.Series(values.to_numpy(), index=np.asarray(index, dtype=float) + 1)

    fig, (loss, km) = plt.subplots(1, 2, figsize=(11, 4))
    panels = {
        loss: [("train/loss_epoch", "train"), ("val/loss", "validation")],
        km: [("val/mean_km", "mean"), ("val/median_km", "median")],
    }
    for i, (ax, tag, label) in enumerate((ax, *line) for ax, ls in panels.items() for line in ls):
        values = series(tag)
        if len(values):
            ax.plot(values.index, values.to_numpy(), marker="o", label=label, color=OKABE_ITO[i])
    loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    km.set(xlabel="epoch", ylabel="validation error (km)", title="Validation error")
    for ax in (loss, km):
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title("Training curves", synthetic=synthetic))
    fig.tight_layout()
    return fig


# --- comparing runs ---------------------------------------------------------------------------


def cumulative_runs_figure(errors_by_run: dict[str, np.ndarray], split: str = "test"):
    """The cumulative error curves of several runs on one split, overlaid."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]
    for i, (name, errors) in enumerate(errors_by_run.items()):
        ordered = np.sort(errors)
        ax.plot(
            ordered,
            np.arange(1, len(ordered) + 1) / len(ordered),
            label=f"{name} (n={len(ordered)}, mean {np.mean(ordered):.1f} km)",
            color=OKABE_ITO[i % len(OKABE_ITO)],
            linestyle=styles[(i // len(OKABE_ITO)) % len(styles)],
        )
    ax.set(
        xlabel="error (km)",
        ylabel="share of locations within",
        xscale="symlog",
        title=f"Cumulative error, {split}",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def runs_against_baseline_figure(table: pd.DataFrame, split: str = "test"):
    """Mean km of each run (bars) against its always-the-training-mean baseline (marks)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(table) + 2), 4))
    positions = np.arange(len(table))
    ax.bar(positions, table[f"{split} mean km"], color=OKABE_ITO[0], label=f"{split} mean km")
    ax.scatter(
        positions, table["baseline km"], marker="_", s=600, color=OKABE_ITO[3], linewidths=2,
        label="always answering the training mean", zorder=3,
    )  # fmt: skip
    ax.set_xticks(positions, table.index, rotation=30, ha="right", fontsize=8)
    top = np.nanmax([table[f"{split} mean km"].max(), table["baseline km"].max()])
    ax.set(ylabel="km", title=f"Mean error per run against the baseline, {split}")
    ax.set_ylim(0, 1.35 * top)  # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    fig.tight_layout()
    return fig
