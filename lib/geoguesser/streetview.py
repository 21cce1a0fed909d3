"""Collecting Street View views for sampled points, into the competition layout.

For each point the Street View Static API's metadata endpoint finds the nearest panorama
within a radius; each panorama is kept once (its uuid is derived from its id), and its
four views (headings 0, 90, 180, 270; 640 x 640; field of view 90; pitch 0) are downloaded
with bounded concurrency, a request-rate limit, and retries with backoff on 429, 5xx and
broken connections. A location is labelled with the panorama's own coordinates.

Nothing half-done looks done: the views of a location are written into a private partial
folder and moved into `images/` only when all four are complete; an fsynced journal
records every finished point; `data.csv` is rewritten (atomically) from the journal, so a
row never exists without its four images. An interrupted download resumes where it
stopped and never fetches a finished location again.

The API key comes from an environment variable or a file. It is sent only as a request
parameter and never printed, logged or written: error messages are built here, never
copied from exceptions (whose text may carry the request URL).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import shutil
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from .atomic import write_csv
from .datasets import CSV_NAME, VIEWS
from .errors import UserError

DEFAULT_BASE_URL = "https://maps.googleapis.com/maps/api"
KEY_ENV = "GOOGLE_MAPS_API_KEY"
STATE_DIR = ".download"
PANORAMA_NAMESPACE = uuidlib.UUID("8d9c8a3e-6f41-4c1e-9a55-2f8b1d0c7e21")
CSV_COLUMNS = [
    "uuid",
    "latitude",
    "longitude",
    "pano_id",
    "sample_latitude",
    "sample_longitude",
    "date",
    "point",
]
CSV_EVERY = 50  # rewrite data.csv after this many new locations, so a kill loses little


class Stop(Exception):
    """A condition that ends the whole download (bad key, quota, network): message is key-free."""


class _Retry(Exception):
    """A transient failure worth another try."""


@dataclass
class Settings:
    base_url: str = DEFAULT_BASE_URL
    radius_m: int = 50
    concurrency: int = 8
    rate_per_s: float = 20.0
    retries: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 30.0
    size: int = 640
    fov: int = 90
    pitch: int = 0
    progress: bool = True


@dataclass
class Summary:
    downloaded: int = 0
    reused: int = 0
    no_panorama: int = 0
    duplicates: int = 0
    total_locations: int = 0
    stopped: str | None = None


def read_key(key_file: str | Path | None = None) -> str:
    """The API key from a file, else from $GOOGLE_MAPS_API_KEY."""
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise UserError(f"{path}: key file not found")
        key = path.read_text().strip()
        if not key:
            raise UserError(f"{path}: key file is empty")
        return key
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise UserError(f"no API key: set {KEY_ENV} or pass --key-file FILE")
    return key


def read_points(path: str | Path) -> pd.DataFrame:
    """Points to visit (latitude, longitude; other columns ignored); one line per bad row."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"{path}: coordinates file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("latitude", "longitude") if c not in raw.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    problems = []
    lat = pd.to_numeric(raw.latitude, errors="coerce")
    lon = pd.to_numeric(raw.longitude, errors="coerce")
    for i in range(len(raw)):
        where = f"{path}:{i + 2}"
        if not np.isfinite(lat.iat[i]) or not np.isfinite(lon.iat[i]):
            pair = f"({raw.latitude.iat[i]!r}, {raw.longitude.iat[i]!r})"
            problems.append(f"{where}: coordinates {pair} are not numbers")
        elif abs(lat.iat[i]) > 90 or abs(lon.iat[i]) > 180:
            problems.append(f"{where}: coordinates ({lat.iat[i]}, {lon.iat[i]}) are out of range")
    if problems:
        raise UserError("\n".join(problems))
    return pd.DataFrame({"latitude": lat.to_numpy(), "longitude": lon.to_numpy()})


class Journal:
    """Append-only, fsynced record of finished points; a torn last line (a kill) is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: list[dict] = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    self.entries.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # only the last line can be torn
            path.write_text("".join(json.dumps(e) + "\n" for e in self.entries))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a")  # noqa: SIM115 - kept open for the whole download

    def append(self, entry: dict) -> None:
        self.entries.append(entry)
        self.handle.write(json.dumps(entry) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()

    def locations(self) -> pd.DataFrame:
        rows = [e for e in self.entries if e["status"] == "ok"]
        return pd.DataFrame(rows, columns=["status", *CSV_COLUMNS])[CSV_COLUMNS]


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart, across all workers."""

    def __init__(self, rate_per_s: float):
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.next_start = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            delay = self.next_start - now
            self.next_start = max(now, self.next_start) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def _is_complete_jpeg(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:  # any decoder complaint means a broken download
        return False
    return b"\xff\xd9" in data[-64:]


class Downloader:
    def __init__(self, out: Path, key: str, settings: Settings):
        import aiohttp

        self.aiohttp = aiohttp
        self.out, self.key, self.settings = out, key, settings
        self.state = out / STATE_DIR
        self.partial = self.state / "partial"
        self.images = out / "images"
        self.limiter: RateLimiter | None = None
        self.claimed: set[str] = set()
        self.summary = Summary()
        self.new_since_csv = 0
        self.journal: Journal | None = None

    # --- HTTP -------------------------------------------------------------------------------

    async def _get(self, session, endpoint: str, params: dict, what: str) -> bytes:
        settings = self.settings
        url = f"{settings.base_url.rstrip('/')}/{endpoint}"
        last: Exception | None = None
        for attempt in range(settings.retries + 1):
            if attempt:
                await asyncio.sleep(
                    settings.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4)
                )
            await self.limiter.wait()
            try:
                async with session.get(url, params={**params, "key": self.key}) as response:
                    if response.status == 429 or response.status >= 500:
                        raise _Retry(f"HTTP {response.status}")
                    if response.status == 403:
                        raise Stop(
                            f"the API refused a {what} request (HTTP 403): check the key and quota"
                        )
                    if response.status != 200:
                        raise Stop(f"the API answered HTTP {response.status} to a {what} request")
                    data = await response.read()
                if what == "image" and not _is_complete_jpeg(data):
                    raise _Retry("incomplete image")
                return data
            except (_Retry, asyncio.TimeoutError, self.aiohttp.ClientError) as exc:
                last = exc
        host = urlsplit(settings.base_url).netloc
        if isinstance(last, _Retry) and "429" in str(last):
            raise Stop(f"quota exhausted: {host} kept answering 429 Too Many Requests")
        if isinstance(last, self.aiohttp.ClientConnectorError):
            raise Stop(f"network down: cannot connect to {host}")
        if isinstance(last, asyncio.TimeoutError):
            raise Stop(f"network down: no answer from {host} within {settings.timeout_s:g} s")
        reason = str(last) if isinstance(last, _Retry) else last.__class__.__name__
        raise Stop(
            f"{what} requests to {host} keep failing ({reason}) after {settings.retries} retries"
        )

    async def _metadata(self, session, lat: float, lon: float) -> dict:
        params = {"location": f"{lat:.7f},{lon:.7f}", "radius": str(self.settings.radius_m)}
        data = await self._get(session, "streetview/metadata", params, "metadata")
        try:
            meta = json.loads(data)
        except ValueError:
            raise Stop("the metadata endpoint answered something that is not JSON") from None
        status = meta.get("status")
        if status == "REQUEST_DENIED":
            raise Stop("the API rejected the key (REQUEST_DENIED)")
        if status == "OVER_QUERY_LIMIT":
            raise Stop("quota exhausted (OVER_QUERY_LIMIT)")
        return meta

    # --- one point --------------------------------------------------------------------------

    async def _point(self, session, index: int, lat: float, lon: float) -> None:
        meta = await self._metadata(session, lat, lon)
        status = meta.get("status")
        if status != "OK" or "pano_id" not in meta:
            self.summary.no_panorama += 1
            self.journal.append({"status": "none", "point": index, "api_status": status})
            return
        pano_id = str(meta["pano_id"])
        if pano_id in self.claimed:  # checked and claimed with no await between: no race
            self.summary.duplicates += 1
            self.journal.append({"status": "duplicate", "point": index, "pano_id": pano_id})
            return
        self.claimed.add(pano_id)
        location_id = str(uuidlib.uuid5(PANORAMA_NAMESPACE, pano_id))
        final = self.images / location_id
        if final.is_dir() and all((final / f"{h}.jpg").exists() for h in VIEWS):
            self.summary.reused += 1  # moved into place before a kill, not yet journalled
        else:
            folder = self.partial / location_id
            folder.mkdir(parents=True, exist_ok=True)
            for heading in VIEWS:
                target = folder / f"{heading}.jpg"
                if target.exists():
                    continue  # finished before an interruption
                size, fov, pitch = self.settings.size, self.settings.fov, self.settings.pitch
                params = {
                    "pano": pano_id, "size": f"{size}x{size}", "heading": str(heading),
                    "fov": str(fov), "pitch": str(pitch),
                }  # fmt: skip
                data = await self._get(session, "streetview", params, "image")
                tmp = folder / f".{heading}.jpg.part"
                tmp.write_bytes(data)
                tmp.replace(target)
            self.images.mkdir(parents=True, exist_ok=True)
            if final.exists():
                shutil.rmtree(final)  # an incomplete leftover of an older layout
            folder.replace(final)
            self.summary.downloaded += 1
        where = meta.get("location", {})
        pano_lat, pano_lon = float(where.get("lat", lat)), float(where.get("lng", lon))
        self.journal.append({
            "status": "ok", "point": index, "pano_id": pano_id, "uuid": location_id,
            "latitude": pano_lat, "longitude": pano_lon, "sample_latitude": lat,
            "sample_longitude": lon, "date": meta.get("date", ""),
        })  # fmt: skip
        self.new_since_csv += 1
        if self.new_since_csv >= CSV_EVERY:
            self.write_csv()

    def write_csv(self) -> None:
        write_csv(self.journal.locations(), self.out / CSV_NAME)
        self.new_since_csv = 0

    # --- the whole run ----------------------------------------------------------------------

    async def run(self, points: pd.DataFrame) -> Summary:
        aiohttp = self.aiohttp
        self.limiter = RateLimiter(self.settings.rate_per_s)
        done = {e["point"] for e in self.journal.entries}
        self.claimed = {e["pano_id"] for e in self.journal.entries if e["status"] == "ok"}
        queue: asyncio.Queue = asyncio.Queue()
        for index in range(len(points)):
            if index not in done:
                queue.put_nowait(index)
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        progress = tqdm(
            total=len(points), initial=len(done), desc="points", disable=not self.settings.progress
        )
        lat, lon = points.latitude.to_numpy(), points.longitude.to_numpy()

        async def worker(session) -> None:
            while not queue.empty():
                index = queue.get_nowait()
                await self._point(session, index, float(lat[index]), float(lon[index]))
                progress.update()

        connector = aiohttp.TCPConnector(limit=self.settings.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            workers = [
                asyncio.create_task(worker(session)) for _ in range(self.settings.concurrency)
            ]
            try:
                await asyncio.gather(*workers)
            except Stop as stop:
                self.summary.stopped = str(stop)
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                progress.close()
        return self.summary


def download(
    coords_csv: str | Path, out: str | Path, key: str, settings: Settings | None = None
) -> Summary:
    """Download the views for every point of `coords_csv` into `out` (created or resumed).

    Returns the summary; `summary.stopped` says why it ended early (bad key, quota,
    network), with everything finished so far kept and listed in data.csv.
    """
    settings = settings or Settings()
    points = read_points(coords_csv)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    downloader = Downloader(out, key, settings)
    downloader.journal = Journal(out / STATE_DIR / "journal.jsonl")
    try:
        summary = asyncio.run(downloader.run(points))
    finally:
        downloader.write_csv()
        downloader.journal.close()
    summary.total_locations = len(downloader.journal.locations())
    if summary.stopped is None:
        shutil.rmtree(downloader.partial, ignore_errors=True)
    return summary
