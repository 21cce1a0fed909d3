"""The synthetic data's geography: smooth fields over the real country, and each view's scene.

Locations are sampled inside the real border, dense around towns and in the lowlands,
sparse in the mountains. Each view's scene is described from fields evaluated a little way
ahead in its heading: the Adriatic is seen only looking toward the coast, ridges rise on
the horizon toward Velebit or Gorski kotar, Slavonia is flat fields on dark soil, Dalmatia
bare limestone and red earth, towns add buildings (`geoguesser.data.painter` paints them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geoguesser.data.layout import VIEWS
from geoguesser.geo.coords import DEFAULT_CRS, to_latlon, to_projected

# (name, lat, lon, weight, spread in km): where people, roads and so Street View cars are.
TOWNS = [
    ("Zagreb", 45.813, 15.978, 10.0, 12.0),
    ("Split", 43.508, 16.440, 4.0, 8.0),
    ("Rijeka", 45.327, 14.442, 3.0, 7.0),
    ("Osijek", 45.554, 18.696, 3.0, 9.0),
    ("Zadar", 44.119, 15.232, 2.0, 7.0),
    ("Pula", 44.867, 13.850, 1.5, 7.0),
    ("Slavonski Brod", 45.160, 18.016, 1.5, 8.0),
    ("Karlovac", 45.487, 15.548, 1.5, 7.0),
    ("Varaždin", 46.305, 16.336, 1.5, 8.0),
    ("Šibenik", 43.735, 15.890, 1.0, 6.0),
    ("Sisak", 45.466, 16.378, 1.0, 7.0),
    ("Dubrovnik", 42.650, 18.094, 1.0, 5.0),
    ("Vukovar", 45.352, 19.002, 1.0, 7.0),
    ("Bjelovar", 45.898, 16.842, 1.0, 8.0),
    ("Koprivnica", 46.163, 16.827, 1.0, 7.0),
    ("Gospić", 44.546, 15.375, 0.4, 5.0),
    ("Požega", 45.340, 17.685, 0.8, 6.0),
    ("Vinkovci", 45.288, 18.805, 1.0, 7.0),
    ("Makarska", 43.297, 17.018, 0.6, 5.0),
    ("Poreč", 45.227, 13.595, 0.8, 6.0),
]
# (lat, lon, spread in km, height 0..1): the mountains as smooth bumps.
MOUNTAINS = [
    (45.35, 14.85, 18.0, 1.0),  # Gorski kotar
    (45.28, 14.20, 6.0, 0.6),  # Učka
    (44.85, 15.05, 11.0, 1.0),  # northern Velebit
    (44.58, 15.32, 11.0, 1.0),  # central Velebit
    (44.35, 15.58, 11.0, 0.9),  # southern Velebit
    (44.75, 15.50, 28.0, 0.5),  # Lika plateau
    (43.95, 16.45, 11.0, 0.9),  # Dinara
    (43.80, 16.20, 25.0, 0.35),  # Dalmatian hinterland
    (43.55, 16.62, 8.0, 0.6),  # Kozjak and Mosor
    (43.33, 17.05, 7.0, 0.9),  # Biokovo
    (45.45, 17.62, 14.0, 0.5),  # Papuk and Psunj
    (45.90, 15.95, 6.0, 0.4),  # Medvednica
    (45.75, 15.40, 9.0, 0.45),  # Žumberak
    (46.20, 15.95, 10.0, 0.3),  # Hrvatsko zagorje hills
]
MIN_MAINLAND_KM2 = 500.0  # the LUMEN data has no islands: keep the mainland and the Dubrovnik part
SCENE_CHUNK = 1024  # locations described per vectorized call: fast, and small beside the images


@dataclass
class Scene:
    """What one location looks like, per heading (arrays over the four views)."""

    ridge: np.ndarray  # horizon height from the terrain ahead, 0..1
    sea: np.ndarray  # how much Adriatic the view shows, 0..1
    forest: np.ndarray
    field: np.ndarray
    karst: np.ndarray
    urban: np.ndarray
    coastal: float  # 1 at the shore, 0 far inland: soil, vegetation and roof colours
    slavonia: float


class Landscape:
    """Smooth fields over the real country, evaluated in the projected plane (km)."""

    def __init__(self, border: BaseGeometry, coast: BaseGeometry, crs: str = DEFAULT_CRS):
        self.crs = crs
        parts = gpd.GeoSeries(getattr(border, "geoms", [border]), crs="EPSG:4326")
        big = parts[parts.to_crs(crs).area / 1e6 >= MIN_MAINLAND_KM2]
        land = big if len(big) else parts
        # Kept in degrees: containment is tested where the border's edges are straight.
        self.land_deg = land.union_all()
        self.bounds = tuple(land.to_crs(crs).total_bounds)
        self.coast = gpd.GeoSeries([coast], crs="EPSG:4326").to_crs(crs).iloc[0]
        shapely.prepare(self.land_deg)
        shapely.prepare(self.coast)
        self.towns = self._place([t[1:3] for t in TOWNS])
        self.town_weight = np.array([t[3] for t in TOWNS])
        self.town_spread = np.array([t[4] for t in TOWNS])
        self.peaks = self._place([m[:2] for m in MOUNTAINS])
        self.peak_spread = np.array([m[2] for m in MOUNTAINS])
        self.peak_height = np.array([m[3] for m in MOUNTAINS])

    def _place(self, latlon) -> np.ndarray:
        lat, lon = np.array(latlon).T
        x, y = to_projected(lat, lon, self.crs)
        return np.stack([x, y], axis=1) / 1000.0

    @staticmethod
    def _bumps(xy_km, centres, spread, height) -> np.ndarray:
        d2 = ((xy_km[:, None, :] - centres[None]) ** 2).sum(-1)
        return (height * np.exp(-d2 / (2 * spread**2))).sum(-1)

    def elevation(self, xy_km) -> np.ndarray:
        return np.clip(self._bumps(xy_km, self.peaks, self.peak_spread, self.peak_height), 0, 1)

    def urban(self, xy_km) -> np.ndarray:
        weight = self.town_weight / self.town_weight.max()
        return np.clip(self._bumps(xy_km, self.towns, self.town_spread * 0.6, weight), 0, 1)

    def coast_distance(self, xy_km) -> tuple[np.ndarray, np.ndarray]:
        """Distance to the shore in km and the compass bearing toward it in degrees."""
        points = shapely.points(xy_km * 1000.0)
        lines = shapely.shortest_line(points, self.coast)
        ends = shapely.get_coordinates(shapely.get_point(lines, 1)) / 1000.0
        delta = ends - xy_km
        distance = np.hypot(delta[:, 0], delta[:, 1])
        bearing = np.degrees(np.arctan2(delta[:, 0], delta[:, 1])) % 360
        return distance, bearing

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`n` mainland locations: 60% near towns, the rest spread out, thinned by mountains."""
        minx, miny, maxx, maxy = self.bounds
        chosen: list[np.ndarray] = []
        have = 0
        while have < n:
            batch = max(2 * (n - have), 64)
            near_town = rng.random(batch) < 0.6
            town = rng.choice(
                len(self.towns), size=batch, p=self.town_weight / self.town_weight.sum()
            )
            around = (
                self.towns[town] * 1000
                + rng.normal(size=(batch, 2)) * self.town_spread[town, None] * 1000
            )
            spread = np.column_stack(
                [rng.uniform(minx, maxx, batch), rng.uniform(miny, maxy, batch)]
            )
            xy = np.where(near_town[:, None], around, spread)
            lat, lon = to_latlon(xy[:, 0], xy[:, 1], self.crs)
            keep = shapely.contains_xy(self.land_deg, lon, lat)
            keep &= near_town | (rng.random(batch) > 0.85 * self.elevation(xy / 1000.0))
            chosen.append(np.column_stack([lat, lon])[keep])
            have += int(keep.sum())
        lat, lon = np.concatenate(chosen)[:n].T
        return lat, lon

    def scenes(self, lat, lon) -> list[Scene]:
        """Describe every location (see `iter_scenes`), as a list."""
        return list(self.iter_scenes(lat, lon))

    def iter_scenes(self, lat, lon, chunk: int = SCENE_CHUNK) -> Iterator[Scene]:
        """Describe the locations in order, `chunk` at a time.

        Each chunk is vectorized; only one chunk's arrays are alive at once, so a caller that
        consumes scenes as they come (as `generate` does) holds memory independent of the
        number of locations. Every field is elementwise per location, so the chunk size does
        not change a single value.
        """
        lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
        for start in range(0, len(lat), chunk):
            yield from self._describe(lat[start : start + chunk], lon[start : start + chunk])

    def _describe(self, lat, lon) -> list[Scene]:
        """Scenes of a few locations, looking 2 km (ground) and 8 km (horizon) ahead per heading.

        Every per-view field is computed once for all the locations given, then each Scene
        takes a copy of its own row: a view into the shared arrays would keep them alive.
        """
        x, y = to_projected(lat, lon, self.crs)
        here = np.stack([x, y], axis=1) / 1000.0
        n = len(here)
        heading = np.radians(np.array(VIEWS, dtype=float))
        step = np.stack([np.sin(heading), np.cos(heading)], axis=1)  # east, north components
        near = (here[:, None, :] + 2.0 * step[None]).reshape(-1, 2)
        far = (here[:, None, :] + 8.0 * step[None]).reshape(-1, 2)
        dist, bearing = self.coast_distance(here)
        near_dist, _ = self.coast_distance(near)
        inland = 1 - np.exp(-near_dist / 20.0)
        elev_near = self.elevation(near)
        urban = self.urban(near) * 1.2
        lon_near = np.repeat(lon, 4)
        lat_near = np.repeat(lat, 4)
        slavonia = _sigmoid((lon_near - 17.0) / 0.25) * _sigmoid((lat_near - 44.95) / 0.1)
        forest = np.clip(
            0.1 + 1.1 * elev_near * np.sqrt(inland) + 0.25 * inland * (1 - slavonia), 0, 1
        )
        karst = np.clip((1 - inland) * (0.7 + 0.6 * elev_near), 0, 1)
        field = np.clip(inland * (1 - elev_near) * (0.3 + 0.9 * slavonia), 0, 1)
        total = forest + karst + field + 1e-6
        open_land = np.clip(1 - urban, 0, 1)
        facing = np.cos(heading[None] - np.radians(bearing)[:, None])
        sea = np.clip(facing, 0, 1) ** 1.5 * np.exp(-dist[:, None] / 10.0)
        ridge = np.clip(self.elevation(far) - 0.4 * self.elevation(here).repeat(4) + 0.1, 0, 1)
        coastal = np.exp(-dist / 25.0)
        shape = (n, 4)
        ridge = ridge.reshape(shape)
        forest_share = (forest / total * open_land).reshape(shape)
        field_share = (field / total * open_land).reshape(shape)
        karst_share = (karst / total * open_land).reshape(shape)
        urban = np.clip(urban, 0, 1).reshape(shape)
        slavonia = slavonia.reshape(shape)[:, 0]
        return [
            Scene(
                ridge=ridge[i].copy(),
                sea=sea[i].copy(),
                forest=forest_share[i].copy(),
                field=field_share[i].copy(),
                karst=karst_share[i].copy(),
                urban=urban[i].copy(),
                coastal=float(coastal[i]),
                slavonia=float(slavonia[i]),
            )
            for i in range(n)
        ]


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))
