"""The checks a type cannot say: whether a backbone can be built here, whether a name is a
plain run-folder name, whether a regions file is polygons on the border.
"""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

from geoguesser.config.choices import RUN_NAME


def backbone_problem(name: str) -> str | None:
    """Why backbone `name` cannot be built here, or None.

    Here rather than in backbones.py so that checking a config imports torch only when the
    name must be looked up in torchvision or timm: steps 01 to 03 never need torch.
    """
    if name == "tinycnn":
        return None
    if name.startswith("timm/"):
        if importlib.util.find_spec("timm") is None:
            return f"backbone {name} needs timm: pip install timm"
        import timm

        model_name = name.removeprefix("timm/")
        return None if model_name in timm.list_models() else f"unknown timm backbone {model_name!r}"
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        return (
            f"unknown backbone {name!r}: use a torchvision classification model (e.g. resnet18, "
            "resnext101_32x8d, efficientnet_b0, convnext_tiny), timm/<name>, or tinycnn"
        )
    return None


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: it can never point outside the runs root."""
    if not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"{name!r} is not a plain folder name (letters, digits and -_.=, only; not . or ..)"
        )
    return name


def _shipped(name: str) -> Path:
    """A file of the package data under geo/assets (found, not imported: config is core)."""
    return Path(str(files("geoguesser.geo") / "assets" / name))


def polygons_file(path: Path):
    """The file's polygons in EPSG:4326, or the reason there are none (geopandas read lazily).

    The one reader of a regions file: the settings check and geo.regions both use it.
    """
    import geopandas as gpd

    if not path.is_file():
        return f"{path}: regions file not found"
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        return f"{path}: not a readable vector file ({str(exc).splitlines()[0]})"
    if frame.crs is None:
        return f"{path}: the file has no CRS; save it with one (EPSG:4326 expected)"
    polygons = frame[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if polygons.empty:
        return f"{path}: no polygons (regions are areas: Polygon or MultiPolygon features)"
    return polygons.to_crs("EPSG:4326")


def regions_problem(path: Path) -> str | None:
    """Why `path` cannot be a regions file (unreadable, no CRS, no polygons), or None."""
    polygons = polygons_file(path)
    return polygons if isinstance(polygons, str) else None


def regions_overlap_problem(regions: str, border: Path | None, country: str | None) -> str | None:
    """Why the regions (`counties` or a file) miss the border (None: the shipped one), or None.

    The whole border file is the test (a `country` picks out of it only later): a file of
    another country's units fails here, before any work.
    """
    path = _shipped("croatia-counties.geojson") if regions == "counties" else Path(regions)
    polygons = polygons_file(path)
    outline = polygons_file(border if border is not None else _shipped("croatia.geojson"))
    if isinstance(polygons, str) or isinstance(outline, str):
        return None  # reported by the check of the file itself
    if not polygons.geometry.union_all().intersects(outline.geometry.union_all()):
        place = f"the border {border}" if border else "the shipped Croatia border"
        return f"{path}: no region overlaps {place}"
    return None
