"""A real browser on JupyterLab (issue 22): token login, Run All, a popup's views, clean notebooks.

A tiny run (1 epoch) is made headlessly; `geoguesser open` then serves its own copy of step
05 on loopback with token authentication, at the root and behind JupyterHub's kind of base
URL. Chromium runs every cell through Lab, saves the notebook, clicks the worst location on
the inline error map and loads the popup's views (natural width > 0); the map's inline copy,
opened from Lab's file server in a tab of its own, shows them too. The checkout's tracked
notebooks must be byte for byte as committed afterwards.
"""

import subprocess

import nbformat
import pytest

from helpers.browser import require_chromium
from helpers.configs import set_args, tiny_overrides
from helpers.lab_browser import (
    lab_in_background,
    open_map_tab,
    run_map_step,
    stop_lab,
    worst_test_location,
)
from helpers.processes import geoguesser


@pytest.fixture(scope="module")
def tiny_run(tiny_data, checkout):
    data, cache = tiny_data
    overrides = [*tiny_overrides(data, cache, max_epochs=1, freeze_epochs=0), "name=labtiny"]
    result = geoguesser("run", "--config", "configs/demo.yaml", *set_args(overrides), cwd=checkout)
    assert result.returncode == 0, result.stderr
    return checkout / "runs" / "labtiny"


def tracked(checkout):
    return {p.name: p.read_bytes() for p in (checkout / "notebooks").glob("*.ipynb")}


@pytest.mark.parametrize("base_url", ["/", "/user/test/"])
def test_step_05_run_in_lab_shows_the_popups_views(tiny_run, checkout, base_url):
    require_chromium()
    before = tracked(checkout)
    process, root, token = lab_in_background(tiny_run, "05", checkout, base_url)
    try:
        ran, views = run_map_step(root, token, tiny_run, worst_test_location(tiny_run), checkout)
        tab = open_map_tab(root, token, tiny_run, worst_test_location(tiny_run), checkout)
    finally:
        stop_lab(process)
    assert ran["path"].endswith("runs/labtiny/05-error-maps.ipynb")  # the run's own copy
    assert ran["errors"] == [] and ran["unexecuted"] == 0
    assert views["width"] > 0, views  # the popup's four views loaded
    assert worst_test_location(tiny_run) in views["text"]
    assert tab["width"] > 0 and tab["scheme"] == "data", tab  # and in a tab of its own
    assert worst_test_location(tiny_run) in tab["text"]
    saved = nbformat.read(tiny_run / "05-error-maps.ipynb", as_version=4)
    assert any(cell.get("outputs") for cell in saved.cells)  # Lab saved into the run
    assert (tiny_run / "metrics.json").is_file()  # the run is finished again
    assert tracked(checkout) == before
    status = subprocess.run(
        ["git", "-C", str(checkout), "status", "--porcelain", "notebooks"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert status.stdout == ""
