"""Folium maps of where the model goes wrong: readable at 10,000 locations, with no network.

GPU boxes are often cut off, so the country border is always drawn as a layer, web tiles
are an optional layer that starts hidden, and `offline=True` inlines Leaflet's JavaScript
and CSS (`leaflet.leaflet_inline`) instead of linking a CDN.

The error map scales by keeping the page small and the browser's work lazy: every location
is one row of a compact JSON array drawn on a canvas by a few lines of our own JavaScript
(`templates/error_layer.js`; one folium object per line and marker made a 29 MB page that
took 12.5 s to build at 3,000 locations). Each location's four views are one small JPEG strip
in `views/` beside the HTML, which the browser fetches only when that popup opens. At country
zoom the map shows one arrow per grid cell (mean truth to mean guess, coloured by mean
error); zoomed in, every location's line appears, with its truth and its guess marked
differently.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
from branca.element import MacroElement
from jinja2 import Template
from matplotlib import colormaps
from matplotlib.colors import to_hex
from shapely.geometry.base import BaseGeometry

from geoguesser.analysis.leaflet import leaflet_inline
from geoguesser.analysis.map_boxes import box, header, header_text, legend, script_json
from geoguesser.analysis.map_inline import inline_copy, notebook_view  # noqa: F401 (re-exported)
from geoguesser.analysis.view_sheets import VIEW_PX, decoded_views, write_view_sheets
from geoguesser.atomic import atomic_path
from geoguesser.style import (
    ERROR_CMAP,
    ERROR_CMAP_RANGE,
    ERROR_SCALE_KM,
    INK,
    LAND,
    OUTLINE,
    SPLIT_COLOURS,
    error_colour,
)

DETAIL_ZOOM = 9  # at this zoom and closer, one line per location
TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


def base_map(border: BaseGeometry, offline: bool = True, tiles: bool = True) -> folium.Map:
    """A map framed on the country, border as a layer; web tiles offered but hidden."""
    west, south, east, north = border.bounds
    m = folium.Map(
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=7,
        tiles=None,
        control_scale=True,
        prefer_canvas=True,
    )
    if offline:
        m.default_js, m.default_css = [], []
        m.get_root().header.add_child(folium.Element(leaflet_inline()))
    if tiles:
        folium.TileLayer(
            TILE_URL,
            attr="&copy; OpenStreetMap contributors",
            name="OpenStreetMap (needs network)",
            overlay=True,
            show=False,
        ).add_to(m)
    folium.GeoJson(
        gpd.GeoSeries([border], crs="EPSG:4326").__geo_interface__,
        name="border",
        style_function=lambda _: {
            "color": INK,
            "weight": 1.5,
            "fillColor": LAND,
            "fillOpacity": 0.6,
        },
    ).add_to(m)
    m.fit_bounds([[south, west], [north, east]])
    return m


def _save(m: folium.Map, out: str | Path) -> Path:
    with atomic_path(out) as tmp:
        m.save(str(tmp))
    return Path(out)


# --- the error map -------------------------------------------------------------------------


class ErrorLayer(MacroElement):
    """The lines and markers of an error map, drawn on a canvas from one JSON array."""

    _template = Template(
        (resources.files("geoguesser.analysis") / "templates" / "error_layer.js").read_text(
            encoding="utf-8"
        )
    )

    def __init__(self, rows: list, cells: list, detail_zoom: int = DETAIL_ZOOM):
        super().__init__()
        self._name = "ErrorLayer"
        self.rows, self.cells = script_json(rows), script_json(cells)
        low, high = ERROR_CMAP_RANGE
        self.colours = script_json(
            [to_hex(colormaps[ERROR_CMAP](x)) for x in np.linspace(low, high, 32)]
        )
        self.scale = ERROR_SCALE_KM
        self.detail_zoom = detail_zoom
        self.view_px = round(VIEW_PX * 1.5)  # shown a little larger than stored
        self.strip_px = 4 * self.view_px


def cached_views(
    cache_dir: str | Path, table: pd.DataFrame, image_size: int
) -> Callable[[str], np.ndarray]:
    """uuid -> its four views from the run's image cache, which training already filled.

    Reading decoded arrays is several times faster than decoding 640 px JPEGs again. The
    cache is opened with every location of the table, as training opened it, so it is found
    as it is (and rebuilt only if the images changed since).
    """
    from geoguesser.data.image_cache import ImageCache

    caches = {
        directory: ImageCache.open(cache_dir, directory, group.uuid.tolist(), image_size)
        for directory, group in table.groupby("dataset_dir")
    }
    directory_of = dict(zip(table.uuid, table.dataset_dir, strict=True))
    return lambda uuid: np.asarray(caches[directory_of[uuid]][uuid])


def _cell_texts(predictions: pd.DataFrame) -> list[str]:
    """`likeliest cells 12 (p 0.41), 7 (p 0.20); expected error 35.2 km; true cell 7` per row.

    From the columns a classifier has: Geography.decode's top cells and expected error (an
    older predictions.csv has only the most likely cell, `pred_label` and `pred_prob`).
    """
    k = 1
    while f"top{k}_label" in predictions:
        k += 1
    pairs = [(f"top{i}_label", f"top{i}_prob") for i in range(1, k)]
    if not pairs and "pred_label" in predictions:
        pairs = [("pred_label", "pred_prob")]
    word = "likeliest cells" if len(pairs) > 1 else "most likely cell"
    frame = pd.DataFrame(index=predictions.index)
    for i, (label, prob) in enumerate(pairs):
        frame[f"l{i}"] = predictions[label]
        frame[f"p{i}"] = predictions.get(prob, np.nan)
    for column in ("expected_error_km", "true_label"):
        frame[column] = predictions.get(column, np.nan)
    texts = []
    for row in frame.itertuples(index=False):
        cells = [
            f"{int(row[2 * i])} (p {row[2 * i + 1]:.2f})"
            if pd.notna(row[2 * i + 1])
            else f"{int(row[2 * i])}"
            for i in range(len(pairs))
            if pd.notna(row[2 * i])
        ]
        items = [f"{word} {', '.join(cells)}"] if cells else []
        if pd.notna(row.expected_error_km):
            items.append(f"expected error {row.expected_error_km:.1f} km")
        if pd.notna(row.true_label):
            items.append(f"true cell {int(row.true_label)}")
        texts.append(html.escape("; ".join(items)))
    return texts


def _groups(predictions: pd.DataFrame, bin_deg: float = 0.25) -> pd.Series:
    """The overview's groups: the true grid cell when known, else a square of `bin_deg`."""
    if "true_label" in predictions and predictions.true_label.notna().all():
        return "cell " + predictions.true_label.astype(int).astype(str)
    lat = np.floor(predictions.true_lat / bin_deg) * bin_deg
    lon = np.floor(predictions.true_lon / bin_deg) * bin_deg
    return "square " + lat.round(2).astype(str) + "/" + lon.round(2).astype(str)


ERROR_MARKS = (  # the error map's legend, under the colours
    '<div style="margin-top:4px">'
    '<span style="color:#222">&#9679;</span> truth &nbsp; &#9675; guess</div>'
    f"<div>below zoom {DETAIL_ZOOM}: one arrow per cell,<br>"
    "mean truth to mean guess;<br>zoom in: each location, click for views</div>"
)


def error_map(
    predictions: pd.DataFrame,
    border: BaseGeometry,
    out: str | Path,
    dataset_dirs: dict[str, str] | None = None,
    offline: bool = True,
    tiles: bool = True,
    views: Callable[[str], np.ndarray] | None = None,
    split: str = "test",
    baseline_km: float | None = None,
    synthetic: bool = False,
    region_accuracy: float | None = None,
) -> Path:
    """The errors of one split: an arrow per cell at country zoom, a line per location closer.

    predictions: uuid, true_lat, true_lon, pred_lat, pred_lon, error_km (and, when present,
    true_label, pred_label, pred_prob). With `views` (uuid -> four decoded views, e.g. read
    from the run's image cache) or `dataset_dirs` (uuid -> dataset directory, decoded here)
    each location's views are written to `views/` beside `out` and shown in its popup; the
    header shows `region_accuracy` (metrics.json's, with grid kind regions) when given.
    """
    out = Path(out)
    # worst first: the first sheets are those an inline copy carries (see inline_copy)
    strips, with_views = {}, predictions.sort_values("error_km", ascending=False).uuid
    if views is None and dataset_dirs is not None:
        views = decoded_views(dataset_dirs)
        with_views = with_views[with_views.isin(dataset_dirs)]
    if views is not None:
        strips = write_view_sheets(with_views, views, out.parent / "views")
    rounded = predictions[["true_lat", "true_lon", "pred_lat", "pred_lon"]].round(5)
    rows = [
        [*coords, round(float(error), 2), strips.get(uuid, ""), html.escape(str(uuid)), cell]
        for coords, error, uuid, cell in zip(
            rounded.itertuples(index=False, name=None),
            predictions.error_km,
            predictions.uuid,
            _cell_texts(predictions),
            strict=True,
        )
    ]
    grouped = predictions.groupby(_groups(predictions).to_numpy())
    means = grouped[["true_lat", "true_lon", "pred_lat", "pred_lon", "error_km"]].mean().round(5)
    counts = grouped.size()
    cells = [
        [*values, int(counts[name]), html.escape(str(name))]
        for name, values in zip(means.index, means.itertuples(index=False, name=None), strict=True)
    ]
    m = base_map(border, offline=offline, tiles=tiles)
    ErrorLayer(rows, cells).add_to(m)
    errors = predictions.error_km.to_numpy()
    m.get_root().html.add_child(
        header(header_text("error map", split, errors, baseline_km, synthetic, region_accuracy))
    )
    m.get_root().html.add_child(legend("error (km)", ERROR_MARKS))
    folium.LayerControl().add_to(m)
    return _save(m, out)


# --- per-cell and locations maps -------------------------------------------------------------


def cell_error_map(
    cells: gpd.GeoDataFrame,
    predictions: pd.DataFrame,
    border: BaseGeometry,
    out: str | Path,
    offline: bool = True,
    synthetic: bool = False,
    tiles: bool = True,
) -> Path:
    """Mean error of the locations in each class cell (by true cell), one layer per split.

    Validation and test are never mixed: each split is its own layer, test shown first.
    """
    m = base_map(border, offline=offline, tiles=tiles)
    splits = sorted(predictions.split.unique(), key=lambda s: (s != "test", s))
    for split in splits:
        group = predictions[predictions.split == split]
        per_cell = group.groupby("true_label").error_km.agg(["mean", "median", "count"])
        shown = cells[cells.label >= 0].merge(per_cell, left_on="label", right_index=True)
        shown = shown[["label", "mean", "median", "count", "geometry"]].round(
            {"mean": 1, "median": 1}
        )
        layer = folium.FeatureGroup(name=f"{split}: mean error per cell", show=split == splits[0])
        folium.GeoJson(
            shown.__geo_interface__,
            style_function=lambda feature: {
                "color": OUTLINE,
                "weight": 0.5,
                "fillColor": error_colour(feature["properties"]["mean"]),
                "fillOpacity": 0.75,
            },
            tooltip=folium.GeoJsonTooltip(
                ["label", "mean", "median", "count"],
                aliases=["cell", "mean km", "median km", "locations"],
            ),
        ).add_to(layer)
        layer.add_to(m)
    first = predictions[predictions.split == splits[0]] if splits else predictions
    text = header_text(
        "mean error per true cell", splits[0] if splits else "", first.error_km, None, synthetic
    )
    others = ", ".join(splits[1:])
    if others:
        text += f" (layers: {others})"
    m.get_root().html.add_child(header(text))
    m.get_root().html.add_child(legend("mean error per cell"))
    folium.LayerControl(collapsed=False).add_to(m)
    return _save(m, out)


def locations_map(
    table: pd.DataFrame,
    border: BaseGeometry,
    out: str | Path,
    offline: bool = True,
    synthetic: bool = False,
    tiles: bool = True,
) -> Path:
    """The locations coloured by split, a layer and a legend entry each, for the EDA."""
    m = base_map(border, offline=offline, tiles=tiles)
    rows = []
    for split, group in table.groupby("split"):
        colour = SPLIT_COLOURS.get(split, INK)
        layer = folium.FeatureGroup(name=f"{split} ({len(group)})").add_to(m)
        points = gpd.GeoDataFrame(
            geometry=gpd.points_from_xy(group.longitude.round(5), group.latitude.round(5)),
            crs="EPSG:4326",
        )
        folium.GeoJson(
            points.__geo_interface__,
            marker=folium.CircleMarker(radius=2, weight=1, fill=True, fill_opacity=0.8),
            style_function=lambda _, c=colour: {"color": c, "fillColor": c},
        ).add_to(layer)
        swatch = f'<span style="color:{colour}">&#9679;</span>'
        rows.append(f"<div>{swatch} {html.escape(str(split))} ({len(group)})</div>")
    prefix = "SYNTHETIC data · " if synthetic else ""
    m.get_root().html.add_child(header(f"{prefix}{len(table)} locations by split"))
    m.get_root().html.add_child(box("<b>split</b>" + "".join(rows), "bottom:30px;right:10px"))
    folium.LayerControl(collapsed=False).add_to(m)
    return _save(m, out)
