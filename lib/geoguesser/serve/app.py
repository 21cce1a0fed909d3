"""`geoguesser serve`: trained checkpoints behind a small local HTTP server (FastAPI).

POST /predict takes one to four photographs (four: N, E, S, W) and answers where the model
places them, with its expected error and likeliest cells; GET /models lists what it can
serve (and what it cannot, with the reason), GET /health says it is up, GET / is a page to
drop photographs on and see the guess on a map, with no network (Leaflet and the border are
inlined, as in the error maps).

Uploads are read into memory, capped, and never written to disk. Each photograph is decoded
on a worker thread, at most DECODE_SLOTS at once and never past MAX_DECODED_PIXELS, so memory
stays flat however many clients send large images; the views go to one `MicroBatcher`, which
waits a few milliseconds for more requests and runs them through the model in one forward
pass: the model sees one batch instead of many single locations, on a single thread so
passes never fight for the cores. Only requests addressed to this server (its `Host`) and
from its own page (or an allowed `Origin`) are answered. A client's mistake (not an image,
too large, too many files, an unknown model) is a 4xx with one sentence; a checkpoint that
cannot load is a 503 with one sentence; nothing a request sends can stop the server or put a
traceback in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import re
import socket
import sys
import threading
import urllib.parse
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from geoguesser.data.images import IMAGE_FORMATS, open_image
from geoguesser.errors import UserError
from geoguesser.serve.limits import (
    BATCH_WAIT_MS,
    DECODE_SLOTS,
    HOST,
    LOCAL_NAMES,
    MAX_BATCH,
    MAX_DECODED_PIXELS,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_MB,
    MAX_VIEWS,
    OPTION_RANGES,
    PORT,
    SHUTDOWN_GRACE_S,
)

if TYPE_CHECKING:  # imported where used: the CLI's parser reads this module's defaults
    import torch


class BadRequest(Exception):
    """A client's mistake: answered with `status` and this one sentence."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def printable(name: str, limit: int = 100) -> str:
    """A client-given name fit for a one-line answer: control characters as ?, cut short."""
    return "".join(c if c.isprintable() else "?" for c in name[:limit])


# --- options -------------------------------------------------------------------------------------


def check_option(option: str, value: float | None) -> None:
    """UserError unless `value` is a finite number within OPTION_RANGES[option] (None: unset)."""
    if value is None:
        return
    low, high = OPTION_RANGES[option]
    if not (math.isfinite(value) and low <= value <= high):
        shown = value if isinstance(value, int) else f"{value:g}"
        raise UserError(f"{option} {shown}: must be a number from {low:g} to {high:g}")


def authority(value: str, default_port: int) -> tuple[str, int] | None:
    """A `Host` header or a URL's host[:port] as (lowercase name, port); None if malformed."""
    if not re.fullmatch(r"[A-Za-z0-9.\-_:\[\]]+", value):
        return None
    try:
        parts = urllib.parse.urlsplit("//" + value)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path:
        return None
    return parts.hostname, default_port if port is None else port


def origin_of(value: str) -> tuple[str, str, int] | None:
    """An `Origin` (scheme://host[:port]) as (scheme, name, port); None if not one."""
    scheme, _, rest = value.partition("://")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        return None
    where = authority(rest, 80 if scheme == "http" else 443)
    return None if where is None else (scheme, *where)


def origin_text(origin: tuple[str, str, int]) -> str:
    """(scheme, name, port) as a browser writes it in `Origin`: default ports left out."""
    scheme, name, port = origin
    host = f"[{name}]" if ":" in name else name
    default = 80 if scheme == "http" else 443
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class Trust:
    """Whom the server answers: the `Host` names it accepts, the foreign origins it allows."""

    hosts: frozenset[tuple[str, int]]
    origins: frozenset[tuple[str, str, int]] = frozenset()

    @classmethod
    def of(cls, host: str, port: int, allow_hosts=(), allow_origins=()) -> Trust:
        """The bound address and the local names at `port`, plus what the user allowed.

        UserError for an --allow-host or --allow-origin that is not a host or an origin.
        """
        hosts = {(name.lower().strip("[]"), port) for name in (host, *LOCAL_NAMES)}
        for value in allow_hosts:
            where = authority(value, port)
            if where is None:
                raise UserError(f"--allow-host {value!r}: not a host name or address[:port]")
            hosts.add(where)
        origins = set()
        for value in allow_origins:
            origin = origin_of(value.rstrip("/"))
            if origin is None:
                raise UserError(
                    f"--allow-origin {value!r}: not an origin (http(s)://host[:port], no path)"
                )
            origins.add(origin)
        return cls(frozenset(hosts), frozenset(origins))

    def refusal(self, method: str, headers: Headers) -> tuple[int, str] | None:
        """(status, sentence) if this request is not one the server answers, else None."""
        host = authority(headers.get("host", ""), 80)
        if host not in self.hosts:
            return 400, (
                "this server does not answer for that Host; start it with --allow-host NAME "
                "to be reached under another name"
            )
        origin = headers.get("origin")
        if origin is None or method in ("GET", "HEAD", "OPTIONS"):
            return None
        parsed = origin_of(origin)
        if parsed == ("http", *host) or parsed in self.origins:
            return None
        return 403, (
            "requests from another site's page are refused; start the server with "
            "--allow-origin ORIGIN to accept that site"
        )


class Guard:
    """ASGI middleware: refuses what `Trust` does not answer, and keeps client hang-ups quiet.

    A client that disconnects mid-upload raises ClientDisconnect inside the app (and a task
    cancelled at shutdown raises CancelledError): nobody is left to answer, so neither is an
    error or a traceback in the log.
    """

    def __init__(self, app, trust: Trust):
        self.app, self.trust = app, trust

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.trust.refusal(scope["method"], Headers(scope=scope))
        if refusal is not None:
            status, sentence = refusal
            return await JSONResponse({"detail": sentence}, status)(scope, receive, send)
        with contextlib.suppress(ClientDisconnect, asyncio.CancelledError):
            await self.app(scope, receive, send)


# --- models ------------------------------------------------------------------------------------


def load_reason(error: Exception, path: Path) -> str:
    """Why `path` did not load, in one line and without the path (the caller names it)."""
    if isinstance(error, UserError):
        text = str(error).strip().splitlines()[0] if str(error).strip() else "cannot be loaded"
        return text.removeprefix(f"{path}: ")
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"cannot be loaded ({type(error).__name__}{': ' + first[:200] if first else ''})"


class ModelStore:
    """The checkpoints a server may use, by name, each loaded on its first request.

    `checkpoint` is served by default (its file name is its name); every `*.ckpt` under
    `checkpoint_dir` is served by its path relative to that folder. One that is not a file,
    or fails to load, is `unusable` with its reason from then on (until a restart): it is
    listed so in GET /models, and a request for it is answered 503 in one sentence.
    """

    def __init__(self, checkpoint: Path | None = None, checkpoint_dir: Path | None = None):
        self.paths: dict[str, Path] = {}
        self.unusable: dict[str, str] = {}
        if checkpoint is not None:
            if not checkpoint.exists():
                raise UserError(f"{checkpoint}: checkpoint not found")
            if not checkpoint.is_file():
                raise UserError(f"{checkpoint}: not a regular file (a checkpoint is one file)")
        if checkpoint_dir is not None:
            if not checkpoint_dir.is_dir():
                raise UserError(f"{checkpoint_dir}: --checkpoint-dir is not a folder")
            for path in sorted(checkpoint_dir.rglob("*.ckpt")):
                name = path.relative_to(checkpoint_dir).as_posix()
                self.paths[name] = path
                if not path.is_file():
                    self.unusable[name] = "not a regular file"
            if not self.paths and checkpoint is None:
                raise UserError(f"{checkpoint_dir}: no .ckpt file in this folder")
        self.default = None
        self.chosen = checkpoint is not None  # the default was named, not picked
        if checkpoint is not None:
            inside = {path.resolve(): name for name, path in self.paths.items()}
            self.default = inside.get(checkpoint.resolve(), checkpoint.name)
            self.paths.setdefault(self.default, checkpoint)
        if self.default is None:
            self.default = next(iter(self.paths))
        self.loaded: dict = {}
        self.lock = threading.Lock()  # one load at a time: requests arrive on many threads
        self.announce = False  # once serving, each model found unusable is one log line

    def say_unusable(self, name: str) -> None:
        print(f"geoguesser serve: model {name} is unusable: {self.unusable[name]}", file=sys.stderr)

    def names(self) -> list[str]:
        return list(self.paths)

    def get(self, name: str | None):
        """The loaded GeoLocator called `name` (None: the default); BadRequest if not servable.

        Loads on a worker thread's time: call it through the thread pool, not on the loop.
        """
        from geoguesser.model.checkpoint import load_checkpoint

        name = name or self.default
        if name not in self.paths:
            known = ", ".join(printable(n) for n in self.paths)
            raise BadRequest(
                f"unknown model {printable(name)!r}; GET /models lists them ({known})", 404
            )
        with self.lock:
            if name not in self.loaded and name not in self.unusable:
                try:
                    self.loaded[name] = load_checkpoint(self.paths[name])
                except Exception as error:  # noqa: BLE001 -- any failure makes it unusable
                    self.unusable[name] = load_reason(error, self.paths[name])
                    if self.announce:
                        self.say_unusable(name)
        if name in self.unusable:
            raise BadRequest(f"model {name!r} cannot be used: {self.unusable[name]}", 503)
        return self.loaded[name]

    def load_default(self) -> None:
        """Load the default model now: UserError (one line) if it cannot be used.

        A named --checkpoint must load; with a folder only, the first one that loads is the
        default, and the others' failures are listed as unusable.
        """
        candidates = [self.default] if self.chosen else self.names()
        for name in candidates:
            try:
                self.get(name)
            except BadRequest:
                continue
            for skipped in candidates[: candidates.index(name)]:
                self.say_unusable(skipped)
            self.default = name
            return
        first = candidates[0]
        where = self.paths[first] if self.chosen else self.paths[first].parent
        if self.chosen:
            raise UserError(f"{where}: {self.unusable[first]}")
        raise UserError(f"no checkpoint here loads; the first, {first}: {self.unusable[first]}")


def views_problem(model, n_views: int) -> str | None:
    """Why `model` cannot place `n_views` views, or None."""
    if model.settings.fusion == "concat" and n_views != MAX_VIEWS:
        return (
            f"this model joins the views by concatenation and needs all four (N, E, S, W); "
            f"got {n_views}"
        )
    return None


# --- images ------------------------------------------------------------------------------------


def too_large(name: str, image: Image.Image, limit: int, what: str) -> BadRequest | None:
    """A 413 if `image` (as it stands: declared, or after draft) has more than `limit` pixels."""
    if image.width * image.height <= limit:
        return None
    return BadRequest(
        f"{name}: {image.width} x {image.height} pixels is too large {what}"
        f" (at most {limit:,} pixels)",
        413,
    )


def decode_upload(data: bytes, name: str, size: int) -> np.ndarray:
    """One uploaded file as a (size, size, 3) uint8 view, decoded in memory; BadRequest if not.

    Only IMAGE_FORMATS are opened. Sizes are checked from the header before any pixel is
    decoded: the declared size against MAX_PIXELS, then the size it will decode at (JPEG's
    draft mode shrinks by up to 8 a side toward `size`; PNG and WEBP decode whole) against
    MAX_DECODED_PIXELS, so no upload decodes into more than that.
    """
    name = printable(name)
    try:
        with open_image(io.BytesIO(data)) as image:
            problem = too_large(name, image, MAX_PIXELS, "for this server")
            if problem is None:
                image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
                problem = too_large(name, image, MAX_DECODED_PIXELS, "to decode in this format")
            if problem is not None:
                raise problem
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image)
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest(f"{name}: too many pixels (at most {MAX_PIXELS:,})", 413) from None
    except Exception:  # noqa: BLE001 -- Pillow's decoders raise many kinds for damaged data
        formats = ", ".join(IMAGE_FORMATS)
        raise BadRequest(f"{name}: not an image this server can read ({formats})") from None


# --- answers -------------------------------------------------------------------------------------


def cell_outline(geography, label: int) -> list[list[float]] | None:
    """The square of class `label` as [lat, lon] corners, rebuilt from its row and column."""
    grid = geography.grid or {}
    row, col = geography.cells["row"][label], geography.cells["col"][label]
    if grid.get("cell_km"):
        from geoguesser.geo.coords import to_latlon

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
    wait_s: float = BATCH_WAIT_MS / 1000
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
        import torch

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
    except (ValueError, LookupError):  # a header the parser cannot read (a bad charset...)
        raise BadRequest("the request is not a valid multipart form") from None


def create_app(
    store: ModelStore,
    top_k: int | None = None,
    wait_s: float = BATCH_WAIT_MS / 1000,
    max_batch: int = MAX_BATCH,
    max_bytes: int = MAX_UPLOAD_BYTES,
    trust: Trust | None = None,
    decode_slots: int = DECODE_SLOTS,
):
    """The FastAPI application serving `store`'s models.

    `trust` says whom it answers (default: the local names at PORT, as `geoguesser serve`
    with no options); at most `decode_slots` photographs are decoded at once.
    """
    from geoguesser.config import TOP_CELLS

    trust = trust or Trust.of(HOST, PORT)
    app = FastAPI(title="geoguesser", docs_url=None, redoc_url=None)
    if trust.origins:  # pages of an allowed origin may also read the answers
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=sorted(map(origin_text, trust.origins)),
            allow_methods=["GET", "POST"],
        )  # fmt: skip
    app.add_middleware(Guard, trust=trust)
    batcher = MicroBatcher(store, top_k or TOP_CELLS, wait_s, max_batch)
    decoding = CapacityLimiter(decode_slots)
    app.state.batcher, app.state.store, app.state.decoding = batcher, store, decoding

    @app.exception_handler(BadRequest)
    async def _bad_request(request, error: BadRequest):
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": len(store.paths), "default": store.default}

    @app.get("/models")
    async def models():
        return {"default": store.default, "models": store.names(), "unusable": store.unusable}

    @app.post("/predict")
    async def predict(request: Request):
        import torch

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
        model = await to_thread.run_sync(store.get, name)  # a first load takes seconds
        problem = views_problem(model, len(uploads))
        if problem:
            raise BadRequest(problem, 422)
        size = model.settings.image_size
        views = []
        for i, upload in enumerate(uploads):
            data = await upload.read()
            # On a worker thread (PIL lets go of the GIL), so the loop keeps accepting; at
            # most `decode_slots` at once, however many requests are waiting.
            views.append(
                await to_thread.run_sync(
                    decode_upload, data, upload.filename or f"image {i + 1}", size, limiter=decoding
                )
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
    from geoguesser.analysis.maps import _leaflet_inline
    from geoguesser.geo.borders import load_border

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
    except (OSError, OverflowError) as error:
        sock.close()
        errno, strerror = getattr(error, "errno", None), getattr(error, "strerror", None)
        reason = "in use" if errno in (98, 48, 10048) else (strerror or str(error))
        raise UserError(f"{host}:{port}: cannot listen there ({reason})") from None
    sock.listen(128)
    return sock


def serve(
    checkpoint: Path | None,
    checkpoint_dir: Path | None,
    host: str = HOST,
    port: int = PORT,
    top_k: int | None = None,
    wait_ms: float = BATCH_WAIT_MS,
    max_batch: int = MAX_BATCH,
    max_upload_mb: float = MAX_UPLOAD_MB,
    allow_hosts: tuple[str, ...] = (),
    allow_origins: tuple[str, ...] = (),
) -> None:
    """Check everything the user gave (numbers, names, models, port), then serve until stopped.

    Every check runs before anything loads, cheapest first; SIGTERM or Ctrl-C stops the
    server, giving requests in flight SHUTDOWN_GRACE_S to finish.
    """
    import uvicorn

    for option, value in (
        ("--port", port),
        ("--top-cells", top_k),
        ("--max-batch", max_batch),
        ("--batch-wait-ms", wait_ms),
        ("--max-upload-mb", max_upload_mb),
    ):
        check_option(option, value)
    if checkpoint is None and checkpoint_dir is None:
        raise UserError("give --checkpoint CKPT or --checkpoint-dir DIR (or both)")
    trust = Trust.of(host, port, allow_hosts, allow_origins)
    sock = bind(host, port)  # the quickest check of what is left, and nothing is loaded yet
    try:
        store = ModelStore(checkpoint, checkpoint_dir)  # the files are there and are files
        store.load_default()  # the default model must load: a bad checkpoint is one line now
    except UserError:
        sock.close()
        raise
    store.announce = True
    bound_port = sock.getsockname()[1]
    if bound_port != port:  # --port 0: the system picked one, and the Host names carry it
        trust = Trust.of(host, bound_port, allow_hosts, allow_origins)
    # A photograph over Pillow's own bomb limit is refused like one over ours, not warned of.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    app = create_app(
        store, top_k, wait_ms / 1000, max_batch, int(max_upload_mb * 2**20), trust=trust
    )
    where = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}/"
    print(f"serving {len(store.paths)} model(s), default {store.default}: {where}", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    uvicorn.Server(config).run(sockets=[sock])
