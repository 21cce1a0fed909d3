"""The files the code reads at run time ship with the package, not only in the checkout.

The border, the server's page (HTML, CSS, JavaScript) and the error map's template are
read through importlib.resources: one left out of `[tool.setuptools.package-data]` is found
in a checkout and missing from an installed copy. So the project is installed into a
folder, and a fresh interpreter that imports that copy (never the checkout) loads each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.paths import REPO

ASSET_FOLDERS = ("geo/assets", "serve/static", "analysis/templates")

USE_THE_INSTALLED_COPY = """
import sys, types
from pathlib import Path

import geoguesser
assert Path(geoguesser.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), (
    geoguesser.__file__
)
from geoguesser.geo.borders import load_border
from geoguesser.serve.page import page_html

border = load_border()
assert border.area > 0
model = types.SimpleNamespace(geography=types.SimpleNamespace(border=None))
page = page_html(types.SimpleNamespace(get=lambda name: model))
assert "window.geoguesserSend = send" in page and "L.map('map'" in page, page[:200]
assert "${" not in page  # every placeholder substituted
import pandas as pd
from geoguesser.analysis import maps

rows = pd.DataFrame({"uuid": ["a", "b"], "true_lat": [45.0, 45.5], "true_lon": [16.0, 16.5],
                     "pred_lat": [45.2, 45.4], "pred_lon": [16.1, 16.2], "error_km": [20.0, 30.0]})
out = maps.error_map(rows, border, Path(sys.argv[1]).parent / "errors.html", tiles=False)
assert "window.geoguesserCentre" in out.read_text()  # the error layer's template, rendered
print("loaded")
"""


def install(target: Path, source: Path) -> None:
    """The project as pip installs it (no editable link), into `target`."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "lib",
        source / "lib",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--target", str(target), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )


def test_the_installed_package_carries_its_border_page_and_map_template(tmp_path):
    target, source = tmp_path / "installed", tmp_path / "source"
    source.mkdir()
    install(target, source)
    for folder in ASSET_FOLDERS:  # every asset in the checkout, none left behind
        shipped = REPO / "lib" / "geoguesser" / folder
        names = {p.name for p in shipped.iterdir() if p.is_file()}
        assert names, folder
        installed = target / "geoguesser" / folder
        assert installed.is_dir(), f"{folder}: not installed"
        assert names <= {p.name for p in installed.iterdir()}, folder
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", USE_THE_INSTALLED_COPY, str(target)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "loaded"
