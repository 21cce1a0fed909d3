"""`geoguesser serve`: trained checkpoints behind a small local HTTP server (FastAPI).

POST /predict takes one to four photographs (four: N, E, S, W) and answers where the model
places them, with its expected error and likeliest cells; GET /models lists what it can
serve, GET /health says it is up, GET / is a page to drop photographs on and see the guess
on a map, with no network (Leaflet and the border are inlined, as in the error maps).

Uploads are read into memory, capped, and never written to disk. Each request's photographs
are decoded on a worker thread and handed to one `MicroBatcher`, which waits a few milliseconds for
more requests and runs them through the model in one forward pass: the model sees one batch
instead of many single locations, on a single thread so passes never fight for the cores.
A client's mistake (not an image, too large, too many files, an unknown model) is a 4xx
with one sentence; nothing a request sends can stop the server.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from .errors import UserError

MAX_VIEWS = 4  # N, E, S, W
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a whole request; Street View JPEGs are ~50 kB each
MAX_PIXELS = 40_000_000  # per image: larger is refused before it is decoded
BATCH_WAIT_S = 0.005  # how long the batcher waits for more requests after the first
MAX_BATCH = 32  # locations in one forward pass at most


class BadRequest(Exception):
    """A client's mistake: answered with `status` and this one sentence."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --- models ------------------------------------------------------------------------------------


class ModelStore:
    """The checkpoints a server may use, by name, each loaded on its first request.

    `checkpoint` is served by default (its file name is its name); every `*.ckpt` under
    `checkpoint_dir` is served by its path relative to that folder.
    """

    def __init__(self, checkpoint: Path | None = None, checkpoint_dir: Path | None = None):
        self.paths: dict[str, Path] = {}
        if checkpoint_dir is not None:
            if not checkpoint_dir.is_dir():
                raise UserError(f"{checkpoint_dir}: --checkpoint-dir is not a folder")
            for path in sorted(checkpoint_dir.rglob("*.ckpt")):
                self.paths[path.relative_to(checkpoint_dir).as_posix()] = path
            if not self.paths and checkpoint is None:
                raise UserError(f"{checkpoint_dir}: no .ckpt file in this folder")
        self.default = None
        if checkpoint is not None:
            inside = {path.resolve(): name for name, path in self.paths.items()}
            self.default = inside.get(checkpoint.resolve(), checkpoint.name)
            self.paths.setdefault(self.default, checkpoint)
        if self.default is None:
            self.default = next(iter(self.paths))
        self.loaded: dict = {}

    def names(self) -> list[str]:
        return list(self.paths)

    def get(self, name: str | None):
        """The loaded GeoLocator called `name` (None: the default); BadRequest if unknown."""
        from .model import load_checkpoint

        name = name or self.default
        if name not in self.paths:
            known = ", ".join(self.paths)
            raise BadRequest(f"unknown model {name!r}; GET /models lists them ({known})", 404)
        if name not in self.loaded:
            try:
                self.loaded[name] = load_checkpoint(self.paths[name])
            except UserError as error:
                raise BadRequest(str(error), 422) from None
        return self.loaded[name]


def views_problem(model, n_views: int) -> str | None:
    """Why `model` cannot place `n_views` views, or None."""
    if model.settings.fusion == "concat" and n_views != MAX_VIEWS:
        return (
            f"this model joins the views by concatenation and needs all four (N, E, S, W); "
            f"got {n_views}"
        )
    return None


# --- images ------------------------------------------------------------------------------------


def decode_upload(data: bytes, name: str, size: int) -> np.ndarray:
    """One uploaded file as a (size, size, 3) uint8 view, decoded in memory; BadRequest if not."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise BadRequest(
                    f"{name}: {image.width} x {image.height} pixels is too large"
                    f" (at most {MAX_PIXELS:,} pixels)",
                    413,
                )
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise BadRequest(f"{name}: not an image this server can read (JPEG, PNG, ...)") from None


# --- answers -------------------------------------------------------------------------------------


def cell_outline(geography, label: int) -> list[list[float]] | None:
    """The square of class `label` as [lat, lon] corners, rebuilt from its row and column."""
    grid = geography.grid or {}
    row, col = geography.cells["row"][label], geography.cells["col"][label]
    if grid.get("cell_km"):
        from .geo import to_latlon

        size = grid["cell_km"] * 1000.0
        square = shapely.segmentize(
            shapely.box(col * size, row * size, (col + 1) * size, (row + 1) * size), size / 8
        )
        x, y = np.asarray(square.exterior.coords).T
        lat, lon = to_latlon(x, y, geography.crs)
    elif grid.get("cell_deg"):
        size = grid["cell_deg"]
        lon, lat = np.asarray(
            shapely.box(col * size, row * size, (col + 1) * size, (row + 1) * size).exterior.coords
        ).T
    else:
        return None
    return [[round(float(a), 5), round(float(b), 5)] for a, b in zip(lat, lon, strict=True)]


def answer(model, decoded: dict, i: int, name: str, n_views: int) -> dict:
    """Row `i` of `model.locate`'s output as the JSON POST /predict returns."""
    geography = model.geography
    centroids = geography.centroids(model.settings.centroid_kind, "latlon").numpy()
    expected = float(decoded["expected_error_km"][i])
    cells = []
    k = 1
    while f"top{k}_label" in decoded:
        label = int(decoded[f"top{k}_label"][i])
        cells.append(
            {
                "label": label,
                "probability": float(decoded[f"top{k}_prob"][i]),
                "latitude": float(centroids[label, 0]),
                "longitude": float(centroids[label, 1]),
                "outline": cell_outline(geography, label),
            }
        )
        k += 1
    return {
        "model": name,
        "views": n_views,
        "latitude": float(decoded["lat"][i]),
        "longitude": float(decoded["lon"][i]),
        "expected_error_km": None if np.isnan(expected) else expected,
        "top_cells": cells,
    }


# --- batching ------------------------------------------------------------------------------------


@dataclass
class Job:
    name: str
    views: torch.Tensor  # (V, 3, H, W) uint8
    future: asyncio.Future


@dataclass
class MicroBatcher:
    """Collects requests for `wait_s` after the first (up to `max_batch`) into one pass.

    Requests for different models or numbers of views cannot share a tensor: each such group
    is its own pass. `batch_sizes` records every pass, for tests and benchmarks.
    """

    store: ModelStore
    top_k: int
    wait_s: float = BATCH_WAIT_S
    max_batch: int = MAX_BATCH
    batch_sizes: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoguesser-model")

    async def submit(self, name: str, views: torch.Tensor) -> dict:
        if self.worker is None or self.worker.done():
            # Started inside the server's own event loop, on the first request.
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(Job(name, views, future))
        return await future

    async def _collect(self) -> list[Job]:
        jobs = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(jobs) < self.max_batch:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return jobs

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                groups.setdefault((job.name, job.views.shape[0]), []).append(job)
            for (name, n_views), group in groups.items():
                try:
                    model = self.store.get(name)
                    batch = torch.stack([job.views for job in group])
                    decoded = await loop.run_in_executor(
                        self.executor, lambda m=model, b=batch: m.locate(b, self.top_k)
                    )
                    self.batch_sizes.append(len(group))
                    for i, job in enumerate(group):
                        if not job.future.done():
                            job.future.set_result(answer(model, decoded, i, name, n_views))
                except Exception as error:  # a failed pass fails its requests, not the server
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(error)


# --- the application -----------------------------------------------------------------------------


async def read_form(request, max_bytes: int):
    """The multipart form of `request`, held in memory; BadRequest if too large or malformed."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BadRequest(f"the request is larger than {max_bytes / 2**20:.3g} MB", 413)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest(
            "send one to four photographs as a multipart form, in the field images", 415
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BadRequest(f"the request is larger than {max_bytes / 2**20:.3g} MB", 413)

    class InMemory(MultiPartParser):
        spool_max_size = max_bytes + 1  # the whole capped body fits: files never roll to disk

    async def stream():
        yield bytes(body)

    try:
        return await InMemory(request.headers, stream(), max_files=MAX_VIEWS).parse()
    except MultiPartException as error:
        if "files" in str(error).lower():
            raise BadRequest(f"at most {MAX_VIEWS} images per request (N, E, S, W)") from None
        raise BadRequest(f"the request is not a valid multipart form ({error})") from None


def create_app(
    store: ModelStore,
    top_k: int | None = None,
    wait_s: float = BATCH_WAIT_S,
    max_batch: int = MAX_BATCH,
    max_bytes: int = MAX_UPLOAD_BYTES,
):
    """The FastAPI application serving `store`'s models."""
    from .config import TOP_CELLS

    app = FastAPI(title="geoguesser", docs_url=None, redoc_url=None)
    batcher = MicroBatcher(store, top_k or TOP_CELLS, wait_s, max_batch)
    app.state.batcher, app.state.store = batcher, store

    @app.exception_handler(BadRequest)
    async def _bad_request(request, error: BadRequest):
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": len(store.paths), "default": store.default}

    @app.get("/models")
    async def models():
        return {"default": store.default, "models": store.names()}

    @app.post("/predict")
    async def predict(request: Request):
        form = await read_form(request, max_bytes)
        files = [item for key, item in form.multi_items() if key == "images"]
        uploads = [item for item in files if hasattr(item, "read")]
        if len(uploads) != len(files) or not uploads:
            raise BadRequest("send one to four image files in the form field images")
        if len(uploads) > MAX_VIEWS:
            raise BadRequest(f"at most {MAX_VIEWS} images per request (N, E, S, W)")
        name = form.get("model") or None
        if name is not None and not isinstance(name, str):
            raise BadRequest("the field model names a model; it is not a file")
        model = store.get(name)
        problem = views_problem(model, len(uploads))
        if problem:
            raise BadRequest(problem, 422)
        size = model.settings.image_size
        contents = [
            (await upload.read(), upload.filename or f"image {i + 1}")
            for i, upload in enumerate(uploads)
        ]
        # Decoded on a worker thread (PIL lets go of the GIL), so the loop keeps accepting.
        views = await run_in_threadpool(
            lambda: [decode_upload(data, filename, size) for data, filename in contents]
        )
        tensor = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous()
        return await batcher.submit(name or store.default, tensor)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return page_html(store)

    return app


# --- the page ------------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>geoguesser</title>
__LEAFLET__
<style>
 body { margin: 0; font: 14px sans-serif; display: flex; height: 100vh; }
 #side { width: 320px; padding: 12px; box-sizing: border-box; overflow-y: auto; }
 #map { flex: 1; }
 #drop { border: 2px dashed #888; border-radius: 6px; padding: 18px; text-align: center;
         cursor: pointer; }
 #drop.over { background: #eef; }
 #result table { border-collapse: collapse; margin-top: 6px; }
 #result td, #result th { padding: 2px 6px; text-align: left; }
 .error { color: #b00; }
</style></head>
<body>
<div id="side">
 <h3>Where was this taken?</h3>
 <label>model <select id="model"></select></label>
 <div id="drop" tabindex="0">drop 1 to 4 photographs here, or click to choose<br>
  <small>four: north, east, south, west, in that order</small></div>
 <input id="files" type="file" accept="image/*" multiple hidden>
 <div id="status"></div>
 <div id="result"></div>
</div>
<div id="map"></div>
<script>
(function () {
  var border = __BORDER__;
  var map = L.map('map', {preferCanvas: true});
  var outline = L.geoJSON(border, {style: {color: '#333', weight: 1.5, fillColor: '#f2efe9',
    fillOpacity: 0.6}}).addTo(map);
  map.fitBounds(outline.getBounds());
  var shown = L.layerGroup().addTo(map);
  var select = document.getElementById('model');
  fetch('models').then(function (r) { return r.json(); }).then(function (m) {
    m.models.forEach(function (name) {
      var o = document.createElement('option');
      o.value = name; o.textContent = name; o.selected = name === m.default;
      select.appendChild(o);
    });
  });
  var status = document.getElementById('status'), result = document.getElementById('result');
  function say(text, bad) { status.textContent = text; status.className = bad ? 'error' : ''; }
  function cell(tr, text) { var td = document.createElement('td'); td.textContent = text;
    tr.appendChild(td); }
  function draw(a) {
    shown.clearLayers();
    var best = a.top_cells.length ? a.top_cells[0].probability : 1;
    a.top_cells.forEach(function (c) {
      var style = {color: '#0072B2', weight: 1, fillColor: '#0072B2',
        fillOpacity: 0.15 + 0.5 * c.probability / best};
      var tip = 'cell ' + c.label + ': p ' + c.probability.toFixed(2);
      (c.outline ? L.polygon(c.outline, style) : L.circleMarker([c.latitude, c.longitude],
        style)).bindTooltip(tip).addTo(shown);
    });
    if (a.expected_error_km !== null) {
      L.circle([a.latitude, a.longitude], {radius: a.expected_error_km * 1000, color: '#D55E00',
        weight: 1, dashArray: '4', fill: false}).addTo(shown);
    }
    L.circleMarker([a.latitude, a.longitude], {radius: 7, color: '#000', weight: 2,
      fillColor: '#D55E00', fillOpacity: 1}).bindTooltip('the guess').addTo(shown);
    result.textContent = '';
    var p = document.createElement('p');
    p.textContent = 'guess ' + a.latitude.toFixed(4) + ', ' + a.longitude.toFixed(4)
      + (a.expected_error_km !== null ? '; expected error ' + a.expected_error_km.toFixed(1)
      + ' km (dashed circle)' : '') + '; ' + a.views + ' view(s), model ' + a.model;
    result.appendChild(p);
    if (a.top_cells.length) {
      var t = document.createElement('table'), h = document.createElement('tr');
      ['cell', 'probability', 'centroid'].forEach(function (x) {
        var th = document.createElement('th'); th.textContent = x; h.appendChild(th); });
      t.appendChild(h);
      a.top_cells.forEach(function (c) {
        var tr = document.createElement('tr');
        cell(tr, c.label); cell(tr, c.probability.toFixed(3));
        cell(tr, c.latitude.toFixed(3) + ', ' + c.longitude.toFixed(3));
        t.appendChild(tr);
      });
      result.appendChild(t);
    }
  }
  function send(files) {
    if (!files.length) return;
    var form = new FormData();
    Array.prototype.forEach.call(files, function (f) { form.append('images', f); });
    if (select.value) form.append('model', select.value);
    say('asking the model about ' + files.length + ' photograph(s)...');
    return fetch('predict', {method: 'POST', body: form}).then(function (r) {
      return r.json().then(function (body) { return [r.ok, body]; });
    }).then(function (x) {
      if (x[0]) { say(''); draw(x[1]); } else { say(x[1].detail, true); }
    }).catch(function (e) { say('no answer from the server: ' + e, true); });
  }
  var drop = document.getElementById('drop'), input = document.getElementById('files');
  drop.addEventListener('click', function () { input.click(); });
  input.addEventListener('change', function () { send(input.files); });
  drop.addEventListener('dragover', function (e) { e.preventDefault(); drop.className = 'over'; });
  drop.addEventListener('dragleave', function () { drop.className = ''; });
  drop.addEventListener('drop', function (e) {
    e.preventDefault(); drop.className = ''; send(e.dataTransfer.files);
  });
  window.geoguesserSend = send;  // what a drop does, for scripts and tests
})();
</script>
</body></html>
"""


def page_html(store: ModelStore) -> str:
    """The page: Leaflet and the default model's border inlined, so it needs no network."""
    from .borders import load_border
    from .maps import _leaflet_inline

    border = store.get(None).geography.border
    if border is None:
        border = load_border()
    geojson = json.dumps(shapely.geometry.mapping(border)).replace("<", "\\u003c")
    return _PAGE.replace("__LEAFLET__", _leaflet_inline()).replace("__BORDER__", geojson)


# --- the command -----------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a taken port is one line before anything loads."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        reason = "in use" if error.errno in (98, 48, 10048) else (error.strerror or str(error))
        raise UserError(f"{host}:{port}: cannot listen there ({reason})") from None
    sock.listen(128)
    return sock


def serve(
    checkpoint: Path | None,
    checkpoint_dir: Path | None,
    host: str,
    port: int,
    top_k: int | None = None,
    wait_s: float | None = None,
    max_batch: int | None = None,
) -> None:
    """Check everything the user gave (models, port), then serve until interrupted."""
    import uvicorn

    wait_s = BATCH_WAIT_S if wait_s is None else wait_s
    max_batch = MAX_BATCH if max_batch is None else max_batch
    for option, value, low in (("--top-cells", top_k, 1), ("--max-batch", max_batch, 1)):
        if value is not None and value < low:
            raise UserError(f"{option} {value}: must be at least {low}")
    if wait_s < 0:
        raise UserError(f"--batch-wait-ms {wait_s * 1000:g}: must not be negative")
    if checkpoint is None and checkpoint_dir is None:
        raise UserError("give --checkpoint CKPT or --checkpoint-dir DIR (or both)")
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: not a port number (0 to 65535)")
    sock = bind(host, port)  # first: the quickest check, and nothing is loaded yet
    try:
        store = ModelStore(checkpoint, checkpoint_dir)
        store.get(None)  # the default model must load: a bad checkpoint is one line now
    except BadRequest as error:
        sock.close()
        raise UserError(str(error)) from None
    except UserError:
        sock.close()
        raise
    app = create_app(store, top_k, wait_s, max_batch)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}/"
    print(f"serving {len(store.paths)} model(s), default {store.default}: {where}")
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
