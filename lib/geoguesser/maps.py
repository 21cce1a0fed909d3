"""Folium maps of where the model goes wrong, readable with no network at all.

GPU boxes are often cut off, so the country border is always drawn as a layer (web tiles
are an optional extra) and `offline=True` inlines Leaflet's JavaScript and CSS from the
`django-js-lib-leaflet` package instead of linking a CDN. Popups embed the four views as
small base64 JPEGs, so a map keeps working when the HTML file is moved.
"""

from __future__ import annotations

import base64
import io
from importlib import resources
from pathlib import Path

import folium
import geopandas as gpd
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex
from PIL import Image
from shapely.geometry.base import BaseGeometry

from .atomic import atomic_path
from .datasets import view_paths
from .image_cache import decode_view

ERROR_SCALE_KM = 150.0  # errors at or beyond this are the darkest colour
LEGEND_STOPS_KM = (0, 10, 25, 50, 100, 150)


def error_colour(error_km: float) -> str:
    return to_hex(colormaps["RdYlGn_r"](min(float(error_km) / ERROR_SCALE_KM, 1.0)))


def thumbnails(dataset_dir: str, uuid: str, size: int = 72) -> list[str]:
    """The four views as small JPEG data URIs (N, E, S, W)."""
    uris = []
    for path in view_paths(dataset_dir, uuid):
        buffer = io.BytesIO()
        Image.fromarray(decode_view(path, size)).save(buffer, format="JPEG", quality=70)
        uris.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
    return uris


def _leaflet_inline() -> str:
    static = resources.files("js_lib_leaflet") / "static" / "js_lib_leaflet"
    css = (static / "leaflet.css").read_text()
    for image in ("layers.png", "layers-2x.png", "marker-icon.png"):  # the icons the CSS points to
        data = base64.b64encode((static / "images" / image).read_bytes()).decode()
        css = css.replace(f"url(images/{image})", f"url(data:image/png;base64,{data})")
    js = (static / "leaflet.js").read_text()
    # folium builds popups with jQuery's $(html)[0]; offline, that one call is all it needs.
    jquery_shim = (
        "window.$ = window.$ || function (html) {"
        " var t = document.createElement('template'); t.innerHTML = html.trim();"
        " return [t.content.firstChild]; };"
    )
    return f"<style>{css}</style>\n<script>{js}</script>\n<script>{jquery_shim}</script>"


def base_map(border: BaseGeometry, offline: bool = True, tiles: bool = True) -> folium.Map:
    """A map framed on the country with its border as a layer."""
    west, south, east, north = border.bounds
    m = folium.Map(
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=7,
        tiles=None,
        control_scale=True,
    )
    if offline:
        m.default_js, m.default_css = [], []
        m.get_root().header.add_child(folium.Element(_leaflet_inline()))
    if tiles:
        folium.TileLayer("OpenStreetMap", name="OpenStreetMap (needs network)").add_to(m)
    folium.GeoJson(
        gpd.GeoSeries([border], crs="EPSG:4326").__geo_interface__,
        name="border",
        style_function=lambda _: {
            "color": "#333333",
            "weight": 1.5,
            "fillColor": "#f2efe9",
            "fillOpacity": 0.6,
        },
    ).add_to(m)
    m.fit_bounds([[south, west], [north, east]])
    return m


def _legend(title: str) -> folium.Element:
    swatch = '<span style="background:{};width:14px;height:10px;display:inline-block"></span>'
    labels = [f"{km:g} km" for km in LEGEND_STOPS_KM[:-1]] + [f"{LEGEND_STOPS_KM[-1]:g}+ km"]
    rows = "".join(
        f"<div>{swatch.format(error_colour(km))} {label}</div>"
        for km, label in zip(LEGEND_STOPS_KM, labels, strict=True)
    )
    html = (
        '<div style="position:fixed;bottom:30px;right:10px;z-index:1000;background:white;'
        f'padding:6px 8px;border:1px solid #999;font:12px sans-serif"><b>{title}</b>{rows}</div>'
    )
    return folium.Element(html)


def _save(m: folium.Map, out: str | Path) -> Path:
    with atomic_path(out) as tmp:
        m.save(str(tmp))
    return Path(out)


def error_map(
    predictions: pd.DataFrame,
    border: BaseGeometry,
    out: str | Path,
    dataset_dirs: dict[str, str] | None = None,
    offline: bool = True,
    tiles: bool = True,
) -> Path:
    """One line per prediction, from the true location to the guess, coloured by error.

    predictions: uuid, true_lat, true_lon, pred_lat, pred_lon, error_km. With
    `dataset_dirs` (uuid -> dataset directory) each popup shows the four views.
    """
    m = base_map(border, offline=offline, tiles=tiles)
    lines = folium.FeatureGroup(name="errors").add_to(m)
    for row in predictions.itertuples(index=False):
        colour = error_colour(row.error_km)
        popup = f"<b>{row.uuid}</b><br>error {row.error_km:.1f} km"
        if dataset_dirs is not None and row.uuid in dataset_dirs:
            images = "".join(
                f'<img src="{uri}" width="72" style="margin:1px">'
                for uri in thumbnails(dataset_dirs[row.uuid], row.uuid)
            )
            popup += f"<br>{images}<br><small>N E S W</small>"
        folium.PolyLine(
            [[row.true_lat, row.true_lon], [row.pred_lat, row.pred_lon]],
            color=colour,
            weight=2,
            opacity=0.8,
        ).add_to(lines)
        folium.CircleMarker(
            [row.true_lat, row.true_lon], radius=3, color=colour, fill=True, fill_opacity=0.9,
            popup=folium.Popup(popup, max_width=340),
        ).add_to(lines)  # fmt: skip
    m.get_root().html.add_child(_legend("error"))
    folium.LayerControl().add_to(m)
    return _save(m, out)


def cell_error_map(
    cells: gpd.GeoDataFrame,
    predictions: pd.DataFrame,
    border: BaseGeometry,
    out: str | Path,
    offline: bool = True,
) -> Path:
    """Choropleth of the mean error of the locations in each class cell (by true cell)."""
    m = base_map(border, offline=offline)
    per_cell = predictions.groupby("true_label").error_km.agg(["mean", "count"])
    shown = cells[cells.label >= 0].merge(per_cell, left_on="label", right_index=True)
    for row in shown.itertuples(index=False):
        style = {
            "color": "#555",
            "weight": 0.5,
            "fillColor": error_colour(row.mean),
            "fillOpacity": 0.7,
        }
        folium.GeoJson(
            row.geometry.__geo_interface__,
            style_function=lambda _, style=style: style,
            tooltip=f"cell {row.label}: mean {row.mean:.1f} km over {row.count} locations",
        ).add_to(m)
    m.get_root().html.add_child(_legend("mean error per cell"))
    return _save(m, out)


def locations_map(
    table: pd.DataFrame, border: BaseGeometry, out: str | Path, offline: bool = True
) -> Path:
    """The locations coloured by split, for the EDA."""
    m = base_map(border, offline=offline)
    colours = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
    for split, group in table.groupby("split"):
        layer = folium.FeatureGroup(name=f"{split} ({len(group)})").add_to(m)
        for lat, lon in zip(group.latitude, group.longitude, strict=True):
            folium.CircleMarker(
                [lat, lon], radius=2, color=colours.get(split, "#333"), fill=True
            ).add_to(layer)
    folium.LayerControl().add_to(m)
    return _save(m, out)
