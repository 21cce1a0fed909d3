"""JupyterLab as users work in it (issue 22), without a browser: see test_lab_browser.py.

A step changed in a notebook changes the run (later steps use it, config.yaml says it,
stale work is dropped), user errors are one line, the fit's progress lines become bars,
the inline map carries its views, and Lab works on the run's copies of the notebooks.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from shapely.geometry import box

from geoguesser.analysis import maps
from geoguesser.errors import UserError
from geoguesser.progress import HEADLESS_ENV, _lines
from geoguesser.workflow import launch
from geoguesser.workflow.runs import (
    FINISHED_NAME,
    STEPS,
    completed_steps,
    mark_completed,
    open_step,
)
from helpers.paths import REPO


@pytest.fixture
def lab_run(tmp_path, tiny_data, checkout, monkeypatch):
    """Step 01 opened in Lab: the kernel starts in notebooks/, the config is configs/demo.yaml."""
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    monkeypatch.chdir(checkout / "notebooks")
    run = tmp_path / "runs" / "lab"
    open_step("01-eda", run, "configs/demo.yaml", [f"data.dataset_dirs=[{tiny_data[0]}]"])
    return run


def recorded(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_a_setting_changed_in_one_step_is_the_runs_setting_for_the_next(lab_run):
    open_step("02-grid", lab_run, "configs/demo.yaml", ["grid.cell_km=30"])
    settings, _ = open_step("03-crs-enrichment", lab_run, "configs/demo.yaml", [])
    assert settings.grid.cell_km == 30
    settings, _ = open_step("04-training", lab_run, "configs/demo.yaml", [])
    assert settings.grid.cell_km == 30
    assert recorded(lab_run)["grid"]["cell_km"] == 30  # the fit process reads this file
    assert [entry["steps"] for entry in recorded(lab_run)["history"]] == [[s] for s in STEPS[:4]]


def test_a_step_refuses_inputs_made_with_other_settings_in_one_line(lab_run):
    open_step("02-grid", lab_run, None, [])
    open_step("03-crs-enrichment", lab_run, None, [])
    with pytest.raises(UserError) as caught:
        open_step("04-training", lab_run, None, ["grid.cell_km=30"])
    message = str(caught.value)
    assert "\n" not in message
    assert "02-grid made its outputs with grid.cell_km=50.0" in message
    assert "now say 30" in message and "re-run 02-grid first" in message
    assert recorded(lab_run)["grid"]["cell_km"] == 50  # nothing recorded for a refused step


def test_a_step_refuses_to_run_before_the_steps_it_reads(lab_run):
    with pytest.raises(UserError, match="step 02-grid has not run; run it before 03"):
        open_step("03-crs-enrichment", lab_run, None, [])


def test_rerunning_a_step_in_lab_invalidates_what_depends_on_it(lab_run):
    for step in STEPS[1:]:
        open_step(step, lab_run, None, [])
    mark_completed(lab_run, STEPS)  # as a finished headless run leaves it
    (lab_run / FINISHED_NAME).write_text("{}")
    open_step("02-grid", lab_run, None, ["grid.cell_km=30"])
    assert not (lab_run / FINISHED_NAME).exists()  # compare and sweeps see an unfinished run
    assert completed_steps(lab_run) == STEPS[:1]
    with pytest.raises(UserError, match="step 03-crs-enrichment has not run; run it before 04"):
        open_step("04-training", lab_run, None, [])


def test_another_config_for_an_existing_run_is_refused(lab_run):
    with pytest.raises(UserError, match="lab was made from .*demo.yaml"):
        open_step("02-grid", lab_run, "configs/sample.yaml", [])


def test_a_user_error_in_a_notebook_cell_is_one_line(tiny_data):
    from nbclient import NotebookClient

    from geoguesser.workflow.pipeline import ensure_kernel

    book = nbformat.v4.new_notebook()
    book.cells.append(
        nbformat.v4.new_code_cell(
            "from geoguesser.config import load_settings\n"
            f"load_settings(None, ['data.dataset_dirs=[{tiny_data[0]}]', 'grid.cellkm=30'])"
        )
    )
    NotebookClient(book, kernel_name=ensure_kernel(), allow_errors=True).execute()
    (error,) = book.cells[0].outputs
    assert error.output_type == "error"
    assert error.traceback == [
        "UserError: grid.cellkm: unknown setting; did you mean grid.cell_km?"
    ]


CHILD = """
from geoguesser.progress import progress
for _ in progress(range(20), desc="caching synthetic at 64px"):
    pass
print("epoch 1/1  train loss 2.5100  val mean 68.8 km", flush=True)
for _ in progress(range(30), desc="predicting"):
    pass
"""


def test_the_fits_progress_lines_become_one_bar_per_loop_in_lab(tmp_path, monkeypatch, capsys):
    # a stand-in for `geoguesser train` that prints what the fit prints, as its child does
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    monkeypatch.setattr(launch, "fit_command", lambda settings, run: [sys.executable, "-c", CHILD])
    launch.launch_fit(None, tmp_path)
    printed = capsys.readouterr()
    assert printed.out.splitlines() == ["epoch 1/1  train loss 2.5100  val mean 68.8 km"]
    assert "caching synthetic at 64px" in printed.err and "predicting" in printed.err  # bars


def test_a_relay_keeps_one_bar_per_loop_and_passes_other_lines():
    from geoguesser.progress import LineRelay

    class Bar:
        made = []

        def __init__(self, total, desc):
            self.total, self.desc, self.n, self.closed = total, desc, 0, False
            Bar.made.append(self)

        def update(self, by):
            self.n += by

        def close(self):
            self.closed = True

    said = []
    relay = LineRelay(say=said.append, bar=Bar)
    with_lines = list(_lines(range(50), 50, "caching x"))  # prints ten lines, collected below
    assert with_lines == list(range(50))
    for done in range(5, 51, 5):
        relay(f"caching x: {done}/50 ({done / 50:.0%}) 0.{done} s")
    relay("epoch 1/2  train loss 1.0")
    assert said == ["epoch 1/2  train loss 1.0"]
    assert [(b.desc, b.total, b.n, b.closed) for b in Bar.made] == [("caching x", 50, 50, True)]


def test_the_printed_progress_line_is_the_one_the_relay_reads(capsys):
    from geoguesser.progress import LineRelay

    list(_lines(range(10), 10, "predicting"))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    said = []
    relay = LineRelay(say=said.append, bar=lambda total, desc: _Counter(total))
    for line in lines:
        relay(line)
    assert said == []


class _Counter:
    def __init__(self, total):
        self.total, self.n = total, 0

    def update(self, by):
        self.n += by

    def close(self):
        pass


def small_error_map(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(43, 46, n), rng.uniform(14, 19, n)
    predictions = pd.DataFrame(
        {
            "uuid": [f"u{i}" for i in range(n)],
            "true_lat": lat,
            "true_lon": lon,
            "pred_lat": lat + 0.1,
            "pred_lon": lon,
            "error_km": np.arange(n, dtype=float),
        }
    )

    def views(uuid):
        return np.full((4, 16, 16, 3), int(uuid[1:]) % 255, dtype=np.uint8)

    return maps.error_map(predictions, box(13, 42, 20, 47), folder / "errors.html", views=views)


def srcdoc_of(shown) -> str:
    import html

    match = re.search(r'srcdoc="([^"]*)"', shown.data)
    assert match, shown.data[:200]
    return html.unescape(match.group(1))


def inline_parts(page: str) -> tuple[list, dict]:
    """The rows of an error map page and the sheets it carries (reference -> data: URI)."""
    rows = json.loads(re.search(r"var rows = (\[.*?\]), cells", page).group(1))
    found = re.search(r"window.geoguesserSheets = (\{.*?\});</script>", page)
    return rows, json.loads(found.group(1)) if found else {}


def test_the_inline_map_carries_its_views_and_fetches_nothing(tmp_path):
    page = srcdoc_of(maps.notebook_view(small_error_map(tmp_path / "maps", 250)))
    rows, sheets = inline_parts(page)
    assert len(rows) == 250 and len(sheets) == 3  # each sheet once, 100 locations a sheet
    assert all(row[5][0] in sheets for row in rows)  # every popup's views are inside the page
    assert all(uri.startswith("data:image/jpeg;base64,") for uri in sheets.values())
    assert "/files/" not in page
    assert (tmp_path / "maps" / "errors-inline.html").read_text() == page  # Lab's HTML viewer
    assert inline_parts((tmp_path / "maps" / "errors.html").read_text())[1] == {}  # sheets beside


def test_a_large_inline_copy_carries_the_worst_locations_views(tmp_path):
    out = small_error_map(tmp_path / "maps", 300)
    one_sheet = (tmp_path / "maps" / "views" / "sheet-0000.jpg").stat().st_size
    rows, sheets = inline_parts(maps.inline_copy(out, budget=one_sheet).read_text())
    carried = [row[6] for row in rows if row[5]]
    assert list(sheets) == ["views/sheet-0000.jpg"]
    assert sorted(carried, key=lambda u: -int(u[1:])) == [f"u{i}" for i in range(299, 199, -1)]
    assert sum(row[5] == 0 for row in rows) == 200  # their popups say where all views are


def test_lab_opens_on_the_runs_copies_and_never_the_tracked_notebooks(lab_run):
    from geoguesser.workflow.lab import open_run

    before = {p.name: p.read_bytes() for p in (REPO / "notebooks").glob("*.ipynb")}
    command, made = open_run(lab_run, "05", REPO / "notebooks", ["--no-browser"])
    assert [p.name for p in made] == [f"{step}.ipynb" for step in STEPS]
    assert command[-2:] == ["--LabApp.default_url=/lab/tree/05-error-maps.ipynb", "--no-browser"]
    book = nbformat.read(lab_run / "02-grid.ipynb", as_version=4)
    injected = next(c for c in book.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'run_dir = "{lab_run}"' in injected.source
    assert f'config = "{lab_run / "config.yaml"}"' in injected.source
    (lab_run / "02-grid.ipynb").write_text("the user's edits")
    assert open_run(lab_run, "02", REPO / "notebooks", [])[1] == []  # never overwritten
    assert (lab_run / "02-grid.ipynb").read_text() == "the user's edits"
    assert {p.name: p.read_bytes() for p in (REPO / "notebooks").glob("*.ipynb")} == before


def test_geoguesser_open_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "geoguesser.cli", "open", "mine", "--runs", str(tmp_path / "runs"),
         "--notebooks", str(REPO / "notebooks")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().endswith("mine: no run there; start one with --config")


def test_the_notebook_filter_commits_no_outputs_and_keeps_clean_notebooks_as_they_are(tmp_path):
    """What the install configures (`make venv`, or `make nbstripout`), in a scratch repository."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    install = subprocess.run(  # the install's commands, printed, not run (-n)
        ["make", "-s", "-n", "-C", str(REPO), "--no-print-directory", "-W", "pyproject.toml",
         ".venv/.installed", f"BIN={Path(sys.executable).parent}"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    configure = [line for line in install if "filter.nbstripout" in line]
    assert len(configure) == 1  # run in the scratch repository as the install runs it in a clone
    subprocess.run(["bash", "-c", configure[0]], cwd=tmp_path, check=True)
    (tmp_path / ".gitattributes").write_bytes((REPO / ".gitattributes").read_bytes())
    clean = REPO / "notebooks" / "02-grid.ipynb"
    (tmp_path / "clean.ipynb").write_bytes(clean.read_bytes())
    book = nbformat.read(clean, as_version=4)
    code = next(cell for cell in book.cells if cell.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="saved by Lab\n")]
    code.execution_count = 3
    nbformat.write(book, tmp_path / "dirty.ipynb")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    committed = subprocess.run(
        [*git, "show", "HEAD:dirty.ipynb"], capture_output=True, text=True, check=True
    ).stdout
    assert "saved by Lab" not in committed and '"execution_count": null' in committed
    status = subprocess.run([*git, "status", "--porcelain", "clean.ipynb"], capture_output=True)
    assert status.stdout == b""  # a clean notebook passes the filter byte for byte
    assert subprocess.run([*git, "show", "HEAD:clean.ipynb"], capture_output=True).stdout == (
        clean.read_bytes()
    )
