"""What a page the project writes may load: nothing from the network."""

import re

from geoguesser.analysis.leaflet import leaflet_inline

URL = re.compile(r"""https?://[^\s"'<>)\\]+""")
# Links a reader may click (attributions), never fetched by the page itself.
ATTRIBUTION = ("https://leafletjs.com", "https://www.openstreetmap.org/copyright")


def network_urls(html: str) -> set[str]:
    """Every URL of the page outside the inlined Leaflet (whose comments cite bug trackers)."""
    leaflet = leaflet_inline()
    assert html.count(leaflet) == 1
    loads = re.findall(r"""<(?:script|link|img)[^>]+(?:src|href)=["']?(https?:[^"' >]+)""", html)
    assert loads == []  # nothing is loaded from the network, Leaflet included
    rest = html.replace(leaflet, "")
    return {url for url in URL.findall(rest) if not url.startswith(ATTRIBUTION)}
