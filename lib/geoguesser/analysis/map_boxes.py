"""The boxes a map shows over itself: the header saying what and how good, the error legend."""

from __future__ import annotations

import html
import json

import folium
import numpy as np

from geoguesser.style import error_colour

LEGEND_STOPS_KM = (0, 10, 25, 50, 100, 150)


def box(html_text: str, where: str) -> folium.Element:
    return folium.Element(
        f'<div style="position:fixed;{where};z-index:1000;background:white;padding:6px 8px;'
        f'border:1px solid #999;font:12px sans-serif">{html_text}</div>'
    )


def header_text(
    what: str,
    split: str,
    errors_km: np.ndarray,
    baseline_km: float | None = None,
    synthetic: bool = False,
    region_accuracy: float | None = None,
) -> str:
    """`SYNTHETIC · test · n=200 · mean 42.4 km · median 30.6 km · training-mean baseline ...`.

    With `region_accuracy` (grid kind regions), `right region 61%` follows the km figures.
    """
    parts = ["SYNTHETIC data"] if synthetic else []
    parts += [what, split, f"n={len(errors_km)}"]
    if len(errors_km):
        parts += [f"mean {np.mean(errors_km):.1f} km", f"median {np.median(errors_km):.1f} km"]
    if region_accuracy is not None:
        parts.append(f"right region {100 * region_accuracy:.0f}%")
    if baseline_km is not None:
        parts.append(f"always answering the training mean: {baseline_km:.1f} km")
    return " · ".join(parts)


def header(text: str) -> folium.Element:
    return box(f"<b>{html.escape(text)}</b>", "top:10px;left:60px")


def legend(title: str, marks: str = "") -> folium.Element:
    swatch = '<span style="background:{};width:14px;height:10px;display:inline-block"></span>'
    labels = [f"{km:g} km" for km in LEGEND_STOPS_KM[:-1]] + [f"{LEGEND_STOPS_KM[-1]:g}+ km"]
    rows = "".join(
        f"<div>{swatch.format(error_colour(km))} {label}</div>"
        for km, label in zip(LEGEND_STOPS_KM, labels, strict=True)
    )
    return box(f"<b>{html.escape(title)}</b>{rows}{marks}", "bottom:30px;right:10px")


def script_json(value) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")
