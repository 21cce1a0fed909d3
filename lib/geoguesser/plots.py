"""Matplotlib figures the notebooks show and the pipeline saves."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from shapely.geometry.base import BaseGeometry

from .atomic import atomic_path
from .datasets import VIEWS
from .image_cache import decode_location

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
VIEW_NAMES = ("N", "E", "S", "W")


def save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(
            tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight"
        )
    return Path(path)


def draw_border(border: BaseGeometry, ax) -> None:
    gpd.GeoSeries([border], crs="EPSG:4326").plot(
        ax=ax, color="#f2efe9", edgecolor="#555", linewidth=0.6
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
            c=SPLIT_COLOURS.get(split),
        )
    ax.set(title=title, xlabel="longitude", ylabel="latitude")
    ax.legend(markerscale=3)
    return fig


def cells_axes(
    cells: gpd.GeoDataFrame, border: BaseGeometry, ax, centroids: bool = True, title: str = ""
) -> None:
    draw_border(border, ax)
    kept, dropped = cells[cells.label >= 0], cells[cells.label < 0]
    kept.boundary.plot(ax=ax, color="#1f77b4", linewidth=0.5)
    if len(dropped):
        dropped.plot(ax=ax, color="#d62728", alpha=0.35)
    if centroids:
        ax.scatter(kept.centroid_lon, kept.centroid_lat, s=8, c="k", marker="x", label="centroid")
        ax.scatter(kept.clipped_lon, kept.clipped_lat, s=8, c="#d62728", label="clipped centroid")
        ax.scatter(
            kept.weighted_lon, kept.weighted_lat, s=8, c="#2ca02c", label="weighted centroid"
        )
    ax.set_title(title or f"{len(kept)} classes, {len(dropped)} cells dropped (no training data)")
    ax.set_axis_off()


def views_figure(rows: pd.DataFrame, size: int = 128, captions: list[str] | None = None):
    """Rows of four views (N, E, S, W) for the given locations (uuid, dataset_dir)."""
    n = len(rows)
    fig, axes = plt.subplots(n, 4, figsize=(8, 2.1 * n), squeeze=False)
    for i, row in enumerate(rows.itertuples(index=False)):
        views = decode_location(row.dataset_dir, row.uuid, size)
        for j in range(len(VIEWS)):
            axes[i, j].imshow(views[j])
            axes[i, j].set_axis_off()
            axes[i, j].set_title(VIEW_NAMES[j] if i == 0 else "", fontsize=9)
        caption = captions[i] if captions else row.uuid
        axes[i, 0].text(0, -0.08, caption, transform=axes[i, 0].transAxes, fontsize=8, va="top")
    fig.tight_layout()
    return fig


def error_figure(errors_by_name: dict[str, np.ndarray]):
    """Histogram and cumulative share of errors, one curve per model or baseline."""
    fig, (hist, cumulative) = plt.subplots(1, 2, figsize=(11, 4))
    top = max(float(np.max(e)) for e in errors_by_name.values() if len(e))
    bins = np.linspace(0, top, 40)
    for name, errors in errors_by_name.items():
        hist.hist(errors, bins=bins, alpha=0.5, label=name)
        ordered = np.sort(errors)
        cumulative.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), label=name)
    hist.set(xlabel="error (km)", ylabel="locations", title="Error histogram")
    cumulative.set(
        xlabel="error (km)",
        ylabel="share of locations within",
        title="Cumulative error",
        xscale="symlog",
    )
    for ax in (hist, cumulative):
        ax.legend()
    return fig
