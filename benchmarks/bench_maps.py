"""Error-map benchmark: build time and size at 3,000 and 10,000 synthetic test locations.

Targets (issue 12): at 3,000 locations at most 10 MB and 5 s to build, views included, and
the page usable in headless Chromium within 5 s with the network cut.

The dataset: a few hundred synthetic locations painted at 128 px and saved as 640 px JPEGs
(the size Street View serves; `--view-px 64` for the demo's), each lent to many uuids
through symbolic links, so 10,000 locations cost seconds to prepare. The views come either
from decoded arrays, as the run's image cache holds them, or from the JPEG files. Truths
are uniform over Croatia; guesses are off by a log-normal distance (median about 30 km) in
a random direction; labels come from 50 km cells. `--naive` also builds the previous map
(one folium object per line and marker, views inline as base64) at 3,000. `--chromium
PATH` opens each map headless with the network cut (`--proxy-server=127.0.0.1:9`), and
`--shots DIR` keeps screenshots.

Usage: python benchmarks/bench_maps.py [--naive] [--chromium chromium] [--shots DIR]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from geoguesser import style
from geoguesser.analysis import maps, view_sheets
from geoguesser.data.image_cache import decode_location
from geoguesser.data.layout import view_paths
from geoguesser.data.synthetic import generate
from geoguesser.geo.borders import load_border
from geoguesser.geo.coords import haversine_km, to_latlon, to_projected
from geoguesser.geo.grid import assign_cells, make_cells
from geoguesser.geo.sampling import sample_uniform


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_views(root: Path, distinct: int, n: int, px: int) -> tuple[Path, list[str]]:
    """n uuids whose images/<uuid> link to one of `distinct` synthetic locations at `px`."""
    source = generate(root / "painted", locations=distinct, image_size=128, seed=3, progress=False)
    data = root / "data"
    originals = pd.read_csv(source / "data.csv", dtype={"uuid": str}).uuid.tolist()
    for uuid in originals:
        for path in view_paths(source, uuid):
            target = data / "images" / uuid / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).resize((px, px), Image.Resampling.BICUBIC).save(target, quality=90)
    uuids = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(n)]
    for i, uuid in enumerate(uuids):
        (data / "images" / uuid).symlink_to(data / "images" / originals[i % len(originals)])
    return data, uuids


def predictions(border, cells, uuids: list[str], seed: int = 0) -> pd.DataFrame:
    n = len(uuids)
    rng = np.random.default_rng(seed)
    truth = sample_uniform(border, n, seed=seed)
    x, y = to_projected(truth.latitude, truth.longitude)
    distance = rng.lognormal(np.log(30_000), 0.9, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    pred_lat, pred_lon = to_latlon(x + distance * np.cos(angle), y + distance * np.sin(angle))
    frame = pd.DataFrame(
        {
            "uuid": uuids,
            "split": "test",
            "true_lat": truth.latitude,
            "true_lon": truth.longitude,
            "pred_lat": pred_lat,
            "pred_lon": pred_lon,
            "true_label": assign_cells(cells, truth.latitude, truth.longitude),
            "pred_label": assign_cells(cells, pred_lat, pred_lon),
            "pred_prob": rng.uniform(0.05, 0.9, n),
        }
    )
    frame["error_km"] = haversine_km(frame.true_lat, frame.true_lon, pred_lat, pred_lon)
    return frame


def naive_map(frame: pd.DataFrame, border, dataset: Path, out: Path) -> None:
    """The previous error map: a folium PolyLine and CircleMarker per location, views inline."""
    import folium

    from geoguesser.data.image_cache import decode_view

    m = maps.base_map(border)
    lines = folium.FeatureGroup(name="errors").add_to(m)
    for row in frame.itertuples(index=False):
        colour = style.error_colour(row.error_km)
        uris = []
        for path in view_paths(dataset, row.uuid):
            buffer = io.BytesIO()
            Image.fromarray(decode_view(path, 72)).save(buffer, format="JPEG", quality=70)
            uris.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
        images = "".join(f'<img src="{uri}" width="72">' for uri in uris)
        popup = f"<b>{row.uuid}</b><br>error {row.error_km:.1f} km<br>{images}"
        folium.PolyLine(
            [[row.true_lat, row.true_lon], [row.pred_lat, row.pred_lon]], color=colour, weight=2
        ).add_to(lines)
        folium.CircleMarker(
            [row.true_lat, row.true_lon], radius=3, color=colour, fill=True,
            popup=folium.Popup(popup, max_width=340),
        ).add_to(lines)  # fmt: skip
    m.save(str(out))


def chromium_seconds(chromium: str, page: Path, screenshot: Path | None) -> tuple[float, bool]:
    """Seconds until headless Chromium, network cut, has run the page and dumped its DOM,
    and whether the map's canvas was drawn. A screenshot is taken in a second pass."""
    flags = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>", "--window-size=1200,900",
    ]  # fmt: skip
    started = time.perf_counter()
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    seconds = time.perf_counter() - started
    drawn = "<canvas" in dom.stdout
    if screenshot is not None:
        subprocess.run(
            [*flags, f"--screenshot={screenshot}", "--virtual-time-budget=3000", page.as_uri()],
            capture_output=True,
            timeout=120,
        )
    return seconds, drawn


def build(frame, border, out: Path, views) -> tuple[float, float, float]:
    """Seconds to build the map, and its HTML and views sizes in MB."""
    started = time.perf_counter()
    maps.error_map(frame, border, out, views=views, baseline_km=120.0)
    seconds = time.perf_counter() - started
    return seconds, out.stat().st_size / 1e6, folder_size(out.parent / "views") / 1e6


def inline(out: Path) -> tuple[float, float, int]:
    """What step 05 shows in JupyterLab (views inside, issue 22): seconds to make, MB, and
    how many locations' views it carries."""
    started = time.perf_counter()
    shown = maps.notebook_view(out)
    seconds = time.perf_counter() - started
    carried = shown.data.count("data:image/jpeg;base64,")  # one per sheet
    return seconds, len(shown.data.encode()) / 1e6, carried * view_sheets.VIEWS_PER_SHEET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 10000])
    parser.add_argument("--distinct", type=int, default=300, help="painted locations to reuse")
    parser.add_argument(
        "--view-px", type=int, default=640, help="view size (Street View: 640; the demo: 64)"
    )
    parser.add_argument("--cache-px", type=int, default=224, help="image cache size (lumen: 224)")
    parser.add_argument("--naive", action="store_true", help="also the previous map at 3,000")
    parser.add_argument("--chromium", help="a Chromium binary: time the pages headless")
    parser.add_argument("--shots", type=Path, help="folder for Chromium screenshots")
    args = parser.parse_args()

    border = load_border()
    root = Path(tempfile.mkdtemp(prefix="bench-maps-"))
    try:
        dataset, uuids = make_views(root, args.distinct, max(args.sizes), args.view_px)
        train = sample_uniform(border, 5000, seed=9)
        cells = make_cells(border, train.latitude, train.longitude, cell_km=50)
        # what the run's image cache hands over: views decoded once, at training size
        decoded = [decode_location(dataset, u, args.cache_px) for u in uuids[: args.distinct]]
        row_of = {uuid: i % args.distinct for i, uuid in enumerate(uuids)}
        sources = {
            f"image cache ({args.cache_px} px)": lambda uuid: decoded[row_of[uuid]],
            f"JPEG files ({args.view_px} px)": view_sheets.decoded_views(
                dict.fromkeys(uuids, dataset)
            ),
        }
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{os.cpu_count()} cores, load average {load} (a shared machine slows every figure)")
        print(f"{'locations':>9}  {'views from':<22} {'html MB':>7} {'views MB':>8} {'build s':>7}")
        for n in args.sizes:
            frame = predictions(border, cells, uuids[:n])
            for name, views in sources.items():
                out = root / f"run{n}" / "maps" / "errors.html"
                seconds, html_mb, views_mb = build(frame, border, out, views)
                print(f"{n:>9,}  {name:<22} {html_mb:>7.2f} {views_mb:>8.2f} {seconds:>7.2f}")
                inline_s, inline_mb, carried = inline(out)
                print(
                    f"{'':>9}  inline in JupyterLab: {inline_mb:.2f} MB in {inline_s:.2f} s,"
                    f" views of the worst {min(carried, n):,} of {n:,} locations inside"
                )
            if args.chromium:
                if args.shots:
                    args.shots.mkdir(parents=True, exist_ok=True)
                shot = args.shots / f"errors-{n}.png" if args.shots else None
                load_s, drawn = chromium_seconds(args.chromium, out, shot)
                blank = out.with_name("blank.html")
                blank.write_text("<html><body>blank</body></html>")
                start_s, _ = chromium_seconds(args.chromium, blank, None)
                print(
                    f"{'':>9}  headless Chromium, network cut: page loaded and run in "
                    f"{load_s:.2f} s ({start_s:.2f} s for a blank page), canvas drawn: {drawn}"
                )
                if args.shots:
                    worst = frame.nlargest(1, "error_km").uuid.iloc[0]
                    shot_at(
                        args.chromium, out, f"uuid={worst}", args.shots / f"errors-{n}-popup.png"
                    )
            if args.naive and n == 3000:
                naive = root / "naive.html"
                started = time.perf_counter()
                naive_map(frame, border, dataset, naive)
                naive_s = time.perf_counter() - started
                naive_mb = naive.stat().st_size / 1e6
                name = "previous map (inline)"
                print(f"{n:>9,}  {name:<22} {naive_mb:>7.2f} {0:>8.2f} {naive_s:>7.2f}")
    finally:
        shutil.rmtree(root)


def shot_at(chromium: str, page: Path, fragment: str, screenshot: Path) -> None:
    """A screenshot of the page opened on one location (errors.html#uuid=...), popup open."""
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--proxy-server=127.0.0.1:9", "--window-size=1200,900",
            f"--screenshot={screenshot}", "--virtual-time-budget=3000",
            page.as_uri() + "#" + fragment,
        ],
        capture_output=True,
        timeout=120,
    )  # fmt: skip


if __name__ == "__main__":
    main()
