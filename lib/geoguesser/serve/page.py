"""The page at GET /: drop photographs, see the guess on a map, with no network.

Its HTML, CSS and JavaScript are files in `static/`, shipped as package data; Leaflet and the
default model's border are substituted into them (string.Template placeholders), so the page
needs nothing from the network, as the error maps do not.
"""

from __future__ import annotations

import json
from importlib import resources
from string import Template
from typing import TYPE_CHECKING

import shapely

if TYPE_CHECKING:
    from geoguesser.serve.store import ModelStore


def static_text(name: str) -> str:
    """One file of the page, read from the installed package."""
    return (resources.files("geoguesser.serve") / "static" / name).read_text(encoding="utf-8")


def page_html(store: ModelStore) -> str:
    """The page: Leaflet and the default model's border inlined, so it needs no network."""
    from geoguesser.analysis.leaflet import leaflet_inline
    from geoguesser.geo.borders import load_border

    border = store.get(None).geography.border
    if border is None:
        border = load_border()
    geojson = json.dumps(shapely.geometry.mapping(border)).replace("<", "\\u003c")
    script = Template(static_text("page.js")).substitute(border=geojson)
    return Template(static_text("page.html")).substitute(
        leaflet=leaflet_inline(), css=static_text("page.css"), script=script
    )
