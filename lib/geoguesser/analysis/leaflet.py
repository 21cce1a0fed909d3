"""Leaflet's JavaScript and CSS inlined into a page, so a map or the server's page needs no network.

GPU boxes are often cut off: the copy comes from the `django-js-lib-leaflet` package instead
of a CDN, with the icons its CSS points to as data: URIs.
"""

from __future__ import annotations

import base64
from importlib import resources


def leaflet_inline() -> str:
    """`<style>` and `<script>` elements carrying Leaflet, and the one jQuery call folium needs."""
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
