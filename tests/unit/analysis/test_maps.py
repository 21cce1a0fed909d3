"""The folium maps on tiny data: files they reference exist, no network, popup text escaped."""

import asyncio
import contextlib
import functools
import http.server
import re
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geoguesser.analysis import maps
from geoguesser.geo.borders import load_border
from helpers import browser
from helpers.datasets import CROATIAN_POINTS
from helpers.pages import network_urls


@pytest.fixture(scope="module")
def border():
    return load_border()


def predictions_for(points, uuids, shift=0.3, seed=0):
    rng = np.random.default_rng(seed)
    lat, lon = np.array(points).T
    pred_lat, pred_lon = lat + rng.uniform(-shift, shift, len(lat)), lon + shift
    from geoguesser.geo.coords import haversine_km

    return pd.DataFrame(
        {
            "uuid": uuids,
            "split": "test",
            "true_lat": lat,
            "true_lon": lon,
            "pred_lat": pred_lat,
            "pred_lon": pred_lon,
            "error_km": haversine_km(lat, lon, pred_lat, pred_lon),
            "true_label": np.arange(len(lat)) % 3,
            "pred_label": (np.arange(len(lat)) + 1) % 3,
            "pred_prob": rng.uniform(0.2, 0.9, len(lat)),
        }
    )


def test_error_map_writes_the_views_it_references_and_fetches_nothing(dataset, tmp_path, border):
    uuids = [f"loc-{i:04d}" for i in range(len(CROATIAN_POINTS))]
    predictions = predictions_for(CROATIAN_POINTS, uuids)
    out = tmp_path / "run" / "maps" / "errors.html"
    maps.error_map(
        predictions,
        border,
        out,
        dataset_dirs={uuid: str(dataset) for uuid in uuids},
        baseline_km=120.0,
        synthetic=True,
        tiles=False,
    )
    html = out.read_text()
    references = re.findall(r'\["(views/sheet-\d+\.jpg)",(\d+)\]', html)
    assert len(references) == len(uuids)  # every location's popup points at its views
    for path, row in references:
        sheet = out.parent / urllib.parse.unquote(path)
        with Image.open(sheet) as image:  # one row of four views per location
            assert image.size == (4 * maps.VIEW_PX, len(uuids) * maps.VIEW_PX)
            assert int(row) < len(uuids)
    assert sorted(int(row) for _, row in references) == list(range(len(uuids)))
    assert "data:image/jpeg" not in html  # views live beside the map, not inside it
    assert network_urls(html) == set()
    assert "SYNTHETIC data" in html and "n=6" in html and "120.0 km" in html
    mean = predictions.error_km.mean()
    assert f"mean {mean:.1f} km" in html
    assert "most likely cell" in html and "true cell" in html


def test_the_tile_layer_is_the_only_network_reference_and_starts_hidden(tmp_path, border):
    predictions = predictions_for(CROATIAN_POINTS, [f"u{i}" for i in range(6)])
    out = maps.error_map(predictions, border, tmp_path / "errors.html", tiles=True)
    html = out.read_text()
    assert network_urls(html) == {maps.TILE_URL}
    assert not re.search(r"tile_layer_\w+\.addTo\(", html)  # offered in the layer control only


def test_popup_text_is_escaped(tmp_path, border):
    hostile = '<img src=x onerror=alert(1)>"&'
    predictions = predictions_for(CROATIAN_POINTS[:2], [hostile, "plain"])
    html = maps.error_map(predictions, border, tmp_path / "errors.html").read_text()
    assert hostile not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;&amp;" in html


def test_a_large_map_stays_small(tmp_path, border):
    rng = np.random.default_rng(1)
    n = 3000
    points = np.column_stack([rng.uniform(43.0, 46.0, n), rng.uniform(14.0, 19.0, n)])
    predictions = predictions_for(points, [f"{i:08x}-uuid" for i in range(n)])
    html = maps.error_map(predictions, border, tmp_path / "errors.html")
    # one folium object per line and marker made 29 MB at 3,000 locations; rows are ~130 bytes
    assert html.stat().st_size < 1_500_000
    assert html.read_text().count("L.polyline(") == 2  # drawn in the browser from one array


def test_cell_map_has_a_layer_per_split_and_the_locations_map_a_legend(tmp_path, border):
    from geoguesser.geo.grid import make_cells

    lat, lon = np.array(CROATIAN_POINTS).T
    cells = make_cells(border, lat, lon, cell_km=100)
    labelled = cells[cells.label >= 0]
    predictions = predictions_for(CROATIAN_POINTS, [f"u{i}" for i in range(6)])
    predictions["true_label"] = labelled.label.to_numpy()[np.arange(6) % len(labelled)]
    predictions["split"] = ["val", "test"] * 3
    html = maps.cell_error_map(cells, predictions, border, tmp_path / "cells.html").read_text()
    assert "test: mean error per cell" in html and "val: mean error per cell" in html
    assert network_urls(html) == {maps.TILE_URL}
    table = pd.DataFrame(
        {
            "latitude": lat,
            "longitude": lon,
            "split": ["train", "train", "val", "test"] * 1 + ["train"] * 2,
        }
    )
    html = maps.locations_map(
        table, border, tmp_path / "locations.html", synthetic=True
    ).read_text()
    assert "<b>split</b>" in html and "train (4)" in html and "test (1)" in html
    assert "SYNTHETIC data" in html


@pytest.fixture
def map_with_views(dataset, tmp_path, border):
    """An error map of six locations with their views, as step 05 writes it."""
    uuids = [f"loc-{i:04d}" for i in range(len(CROATIAN_POINTS))]
    out = tmp_path / "run" / "maps" / "errors.html"
    maps.error_map(
        predictions_for(CROATIAN_POINTS, uuids),
        border,
        out,
        dataset_dirs={uuid: str(dataset) for uuid in uuids},
        baseline_km=120.0,
    )
    return out


@contextlib.contextmanager
def served(folder: Path):
    """`folder` over HTTP on 127.0.0.1, as any static file server would serve the maps."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


POPUP = "document.querySelector('.leaflet-popup-content')"
LOADED = """(() => {
  const popup = document.querySelector('.leaflet-popup-content');
  const views = popup && popup.querySelector('[role=img]');
  if (!views) return null;
  const url = getComputedStyle(views).backgroundImage.slice(5, -2);
  return new Promise(done => {
    const image = new Image();
    image.onload = () => done([url, image.naturalWidth, image.naturalHeight]);
    image.onerror = () => done([url, 0, 0]);
    image.src = url;
  });
})()"""


@pytest.mark.parametrize("how", ["file", "http"])
def test_the_error_map_draws_and_opens_a_popup_in_headless_chromium_offline(map_with_views, how):
    browser.require_chromium()
    folder = map_with_views.parent

    async def script(page):
        drawn = await page.wait_for(
            "typeof L === 'object' && document.querySelectorAll('canvas').length > 0"
        )
        text = await page.wait_for(f"{POPUP} && {POPUP}.textContent")
        views = await page.wait_for(LOADED)
        header = await page.evaluate("document.body.innerText")
        return drawn, text, views, header, list(page.requested)

    with contextlib.ExitStack() as stack:
        base = folder.as_uri() + "/" if how == "file" else stack.enter_context(served(folder))
        drawn, text, views, header, requested = asyncio.run(
            browser.open_page(base + "errors.html#uuid=loc-0003", script)
        )
    assert drawn and "loc-0003" in text and "error" in text and "truth" in text
    url, width, height = views  # the popup's views, a row of the sheet beside the map
    assert "views/sheet-0000.jpg" in url and (width, height) == (4 * maps.VIEW_PX, 6 * maps.VIEW_PX)
    assert "error map · test · n=6" in header
    elsewhere = [u for u in requested if not u.startswith((base, "data:", "blob:", "about:"))]
    assert elsewhere == []  # nothing off 127.0.0.1 or the disk: no tiles, no CDN
