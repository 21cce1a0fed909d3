"""Collecting Street View views for sampled points, into the competition layout.

For each point the Street View Static API's metadata endpoint finds the nearest panorama
within a radius; each panorama is kept once (its uuid is derived from its id), and its
four views (headings 0, 90, 180, 270; 640 x 640; field of view 90; pitch 0) are downloaded
with bounded concurrency through the API client (`geoguesser.data.streetview_client`:
the request rate, the retries). A location is labelled with the panorama's own coordinates.

It writes only into a folder it created: `--out` on a folder holding anything else (another
dataset above all) is refused before any request, because appending to someone's data.csv
is writing into their dataset, and several dataset folders load together anyway.

Nothing half-done looks done: the views of a location are written into a private partial
folder and moved into `images/` only when all four are complete; an fsynced journal
(`geoguesser.data.streetview_journal`) records every finished point; `data.csv` is rebuilt
(atomically, and only when it changes) from the journal's locations whose four views are in
`images/`, so a row never exists without its images and a failed run leaves the dataset as
it was. An interrupted download resumes where it stopped and never fetches a finished
location again.

The API key comes from an environment variable or a file. It is sent only as a request
parameter and never printed, logged or written: error messages are built by the client, never
copied from exceptions (whose text may carry the request URL).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from geoguesser.atomic import write_text
from geoguesser.data.layout import CSV_NAME, VIEWS, parse_coordinates, read_csv_columns
from geoguesser.data.streetview_client import Stop, StreetViewClient, point_key
from geoguesser.data.streetview_journal import Journal
from geoguesser.errors import UserError

DEFAULT_BASE_URL = "https://maps.googleapis.com/maps/api"
KEY_ENV = "GOOGLE_MAPS_API_KEY"
STATE_DIR = ".download"
PANORAMA_NAMESPACE = uuidlib.UUID("8d9c8a3e-6f41-4c1e-9a55-2f8b1d0c7e21")
CSV_EVERY = 50  # rewrite data.csv after this many new locations, so a kill loses little


@dataclass
class Settings:
    """How to download; checked on creation, so a bad value stops before any request."""

    base_url: str = DEFAULT_BASE_URL
    radius_m: int = 50
    concurrency: int = 8
    rate_per_s: float | None = 20.0  # None: no rate limit (asked for explicitly)
    retries: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 30.0
    size: int = 640
    fov: int = 90
    pitch: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.concurrency < 1:
            problems.append(f"--concurrency {self.concurrency}: must be at least 1")
        if self.retries < 0:
            problems.append(f"--retries {self.retries}: must be 0 or more")
        if self.rate_per_s is not None and not (0 < self.rate_per_s < math.inf):
            problems.append(
                f"--rate {self.rate_per_s:g}: must be a number of requests per second above 0"
                " (or --no-rate-limit)"
            )
        if not (0 < self.timeout_s < math.inf):
            problems.append(f"--timeout {self.timeout_s:g}: must be a number of seconds above 0")
        if self.radius_m < 1:
            problems.append(f"--radius {self.radius_m}: must be at least 1 metre")
        if problems:
            raise UserError("\n".join(problems))


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
    raw, problem = read_csv_columns(path, ("latitude", "longitude"))
    if problem:
        raise UserError(
            f"{path}: {problem}"
            if problem != "not found"
            else f"{path}: coordinates file not found"
        )
    lats, lons, problems = [], [], []
    for i, (lat_text, lon_text) in enumerate(raw.itertuples(index=False)):
        lat, lon, problem = parse_coordinates(lat_text, lon_text)
        if problem:
            problems.append(f"{path}:{i + 2}: {problem}")
        lats.append(lat)
        lons.append(lon)
    if problems:
        raise UserError("\n".join(problems))
    return pd.DataFrame({"latitude": lats, "longitude": lons}, dtype=float)


def claim_folder(out: Path) -> None:
    """Make `out` the downloader's own folder, or refuse it when it holds anything else.

    The downloader's folders carry its state folder (`.download/`); an empty or new folder
    becomes one. Anything else, another dataset above all, is refused before any request.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose a new --out")
    if out.is_dir() and not (out / STATE_DIR).is_dir():
        names = sorted(p.name for p in out.iterdir())
        if names:
            held = (
                "a dataset"
                if CSV_NAME in names or "images" in names
                else f"files ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
            )
            raise UserError(
                f"{out}: holds {held} that the downloader did not create, and it never writes"
                " into another dataset; choose a new --out (several dataset folders load together)"
            )
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)


class Downloader:
    """One download into one folder: the points' panoramas, their views, the journal, data.csv."""

    def __init__(self, out: Path, key: str, settings: Settings):
        import aiohttp

        self.aiohttp = aiohttp
        self.out, self.key, self.settings = out, key, settings
        self.state = out / STATE_DIR
        self.partial = self.state / "partial"
        self.images = out / "images"
        self.client: StreetViewClient | None = None
        self.claimed: set[str] = set()
        self.summary = Summary()
        self.new_since_csv = 0
        self.journal: Journal | None = None

    # --- one point --------------------------------------------------------------------------

    async def _point(self, index: int, lat: float, lon: float) -> None:
        meta = await self.client.metadata(lat, lon, self.settings.radius_m)
        status = meta.get("status")
        if status != "OK" or "pano_id" not in meta:
            self.summary.no_panorama += 1
            self.journal.append({
                "status": "none", "point": index, "api_status": status,
                "sample_latitude": lat, "sample_longitude": lon,
            })  # fmt: skip
            return
        pano_id = str(meta["pano_id"])
        where = meta.get("location") or {}
        pano_lat, pano_lon, problem = parse_coordinates(
            str(where.get("lat", lat)) if isinstance(where, dict) else "",
            str(where.get("lng", lon)) if isinstance(where, dict) else "",
        )
        if problem:
            raise Stop(f"the metadata endpoint answered a malformed location ({problem})")
        if pano_id in self.claimed:  # checked and claimed with no await between: no race
            self.summary.duplicates += 1
            self.journal.append({
                "status": "duplicate", "point": index, "pano_id": pano_id,
                "sample_latitude": lat, "sample_longitude": lon,
            })  # fmt: skip
            return
        self.claimed.add(pano_id)
        location_id = str(uuidlib.uuid5(PANORAMA_NAMESPACE, pano_id))
        await self._views(pano_id, location_id)
        self.journal.append({
            "status": "ok", "point": index, "pano_id": pano_id, "uuid": location_id,
            "latitude": pano_lat, "longitude": pano_lon, "sample_latitude": lat,
            "sample_longitude": lon, "date": str(meta.get("date", "")),
        })  # fmt: skip
        self.new_since_csv += 1
        if self.new_since_csv >= CSV_EVERY:
            self.write_csv()

    async def _views(self, pano_id: str, location_id: str) -> None:
        """The four views of a panorama into `images/<location_id>`, all of them or none."""
        final = self.images / location_id
        if final.is_dir() and all((final / f"{h}.jpg").exists() for h in VIEWS):
            self.summary.reused += 1  # moved into place before a kill, not yet journalled
            return
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
            data = await self.client.get("streetview", params, "image")
            tmp = folder / f".{heading}.jpg.part"
            tmp.write_bytes(data)
            tmp.replace(target)
        self.images.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)  # an incomplete leftover of an older layout
        folder.replace(final)
        self.summary.downloaded += 1

    def write_csv(self) -> None:
        """Rebuild data.csv from what the folder holds; left untouched when nothing changed."""
        text = self.journal.locations(self.images).to_csv(index=False)
        path = self.out / CSV_NAME
        if not path.is_file() or path.read_text() != text:
            write_text(path, text)
        self.new_since_csv = 0

    # --- the whole run ----------------------------------------------------------------------

    async def run(self, points: pd.DataFrame) -> Summary:
        aiohttp, settings = self.aiohttp, self.settings
        # Done means these coordinates were visited, whatever their line in whichever
        # coordinates file: a second file into the same folder is not skipped by line number.
        done = {
            point_key(e["sample_latitude"], e["sample_longitude"])
            for e in self.journal.entries
            if "sample_latitude" in e
        }
        self.claimed = {e["pano_id"] for e in self.journal.entries if e["status"] == "ok"}
        queue: asyncio.Queue = asyncio.Queue()
        for index in range(len(points)):
            if point_key(points.latitude.iat[index], points.longitude.iat[index]) not in done:
                queue.put_nowait(index)
        timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        progress = tqdm(
            total=len(points),
            initial=len(points) - queue.qsize(),
            desc="points",
            disable=not settings.progress,
        )
        lat, lon = points.latitude.to_numpy(), points.longitude.to_numpy()

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                await self._point(index, float(lat[index]), float(lon[index]))
                progress.update()

        connector = aiohttp.TCPConnector(limit=settings.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self.client = StreetViewClient(
                session, self.key, settings.base_url, settings.rate_per_s,
                settings.retries, settings.backoff_s, settings.timeout_s,
            )  # fmt: skip
            workers = [asyncio.create_task(worker()) for _ in range(settings.concurrency)]
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
    network, a malformed answer), with everything finished so far kept and listed in data.csv.
    """
    settings = settings or Settings()
    points = read_points(coords_csv)
    out = Path(out)
    claim_folder(out)
    downloader = Downloader(out, key, settings)
    downloader.journal = Journal(out / STATE_DIR / "journal.jsonl")
    try:
        summary = asyncio.run(downloader.run(points))
    finally:
        downloader.write_csv()
        downloader.journal.close()
    summary.total_locations = len(downloader.journal.locations(downloader.images))
    if summary.stopped is None:
        shutil.rmtree(downloader.partial, ignore_errors=True)
    return summary
