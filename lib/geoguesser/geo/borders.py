"""The country polygon (Croatia by default) that the grid, the validation and the maps use.

The shipped file is Natural Earth 1:10m (see assets/README.md); any other polygon file
works, and a multi-country file is narrowed to one country by name or ISO code.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geoguesser.errors import UserError
from geoguesser.geo.coords import haversine_km

# Package data: found through the package, from a checkout or an installed wheel alike.
ASSETS = Path(str(files("geoguesser.geo") / "assets"))
DEFAULT_BORDER = ASSETS / "croatia.geojson"
DEFAULT_COAST = ASSETS / "croatia-coast.geojson"
# Attribute columns that may name a country, in Natural Earth and in our own files.
COUNTRY_COLUMNS = ("name", "NAME", "ADMIN", "NAME_LONG", "SOVEREIGNT", "NAME_EN")
ISO_COLUMNS = ("iso_a3", "iso_a2", "ISO_A3", "ISO_A2", "ADM0_A3", "ISO_A3_EH", "ISO_A2_EH")


def _read(path: Path) -> gpd.GeoDataFrame:
    if not path.exists():
        raise UserError(f"{path}: border file not found")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise UserError(f"{path}: not a readable vector file ({exc})") from None
    if frame.crs is None:
        raise UserError(f"{path}: the file has no CRS; save it with one (EPSG:4326 expected)")
    return frame.to_crs("EPSG:4326")


def _select(frame: gpd.GeoDataFrame, country: str, path: Path) -> gpd.GeoDataFrame:
    wanted = country.strip().casefold()
    for column in (*ISO_COLUMNS, *COUNTRY_COLUMNS):
        if column in frame.columns:
            hit = frame[frame[column].astype(str).str.strip().str.casefold() == wanted]
            if len(hit):
                return hit
    names = next((frame[c] for c in COUNTRY_COLUMNS if c in frame.columns), None)
    known = ", ".join(sorted(map(str, names))[:8]) if names is not None else "no name column"
    raise UserError(
        f"{path}: no country named {country!r} (it has: {known}{'...' if len(frame) > 8 else ''})"
    )


@lru_cache(maxsize=8)
def load_border(path: str | Path | None = None, country: str | None = None) -> BaseGeometry:
    """The country as one (multi)polygon in EPSG:4326, islands included.

    `country` (a name or an ISO-2/ISO-3 code) picks one feature out of a file with many;
    without it, all the file's polygons are merged.
    """
    path = Path(path) if path is not None else DEFAULT_BORDER
    frame = _read(path)
    if country is not None:
        frame = _select(frame, country, path)
    polygons = frame[frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    if polygons.empty:
        raise UserError(f"{path}: holds no polygon")
    return shapely.make_valid(polygons.geometry.union_all())


@lru_cache(maxsize=8)
def load_coast(path: str | Path | None = None) -> BaseGeometry:
    """The sea shore as lines in EPSG:4326 (the synthetic generator looks toward it)."""
    path = Path(path) if path is not None else DEFAULT_COAST
    return _read(path).geometry.union_all()


def bbox_diagonal_km(border: BaseGeometry) -> float:
    """Great-circle length of the border's bounding-box diagonal (the GeoGuessr score scale)."""
    west, south, east, north = border.bounds
    return float(haversine_km(south, west, north, east))


def inside(border: BaseGeometry, lat, lon) -> np.ndarray:
    """Boolean mask of the points that fall inside (or on) the border."""
    shapely.prepare(border)
    return shapely.intersects_xy(border, np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))


def snap_inside(border: BaseGeometry, lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """Move points outside the border to the border's nearest point; others stay put.

    Nearest is measured in degrees, which is close enough for a snap of a few km.
    """
    lat = np.array(lat, dtype=float, copy=True)
    lon = np.array(lon, dtype=float, copy=True)
    outside = ~inside(border, lat, lon)
    if outside.any():
        lines = shapely.shortest_line(shapely.points(lon[outside], lat[outside]), border)
        ends = shapely.get_coordinates(shapely.get_point(lines, 1))
        lon[outside], lat[outside] = ends[:, 0], ends[:, 1]
    return lat, lon
