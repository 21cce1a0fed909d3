"""JupyterLab driven as a user drives it: `geoguesser open`, token login, Run All, a popup.

`lab_in_background` starts `geoguesser open RUN STEP` on a free loopback port with token
authentication (and optionally a base URL, as JupyterHub's /user/NAME/); `run_map_step`
logs in with the token in headless Chromium (tests/helpers/browser.py), runs every cell of step 05
through Lab's own command, saves the notebook, scrolls to the inline error map, clicks a
location and reports whether the popup's views loaded. Run as a script it does this on an
existing run and writes the README's screenshot:

    .venv/bin/python tests/helpers/lab_browser.py runs/demo figures/lab-inline-error-map.png
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers.*
from helpers.browser import open_page, screenshot  # noqa: E402
from helpers.ports import free_port, wait_until_answering  # noqa: E402

LAB_OPTIONS = ["--no-browser", "--allow-root", "--LabApp.expose_app_in_browser=True"]


def lab_in_background(
    run_dir: Path, step: str, cwd: Path, base_url: str = "/"
) -> tuple[subprocess.Popen, str, str]:
    """`geoguesser open` serving on 127.0.0.1 with a fresh token, once its API answers."""
    port, token = free_port(), secrets.token_hex(16)
    options = [*LAB_OPTIONS, "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.base_url={base_url}"]
    options.append(f"--IdentityProvider.token={token}")
    process = subprocess.Popen(
        [sys.executable, "-m", "geoguesser.cli", "open", run_dir.name, step,
         "--runs", str(run_dir.parent), "--", *options],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}{base_url}"
    status = f"{root}api/status?token={token}"
    wait_until_answering(
        process, status, process.stdout, "geoguesser open exited", "JupyterLab did not answer"
    )
    return process, root, token


def stop_lab(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# the notebook panel of step 05 in Lab's main area (the file browser may hold the focus)
NOTEBOOK = (
    "(window.jupyterapp && [...window.jupyterapp.shell.widgets('main')].find("
    "w => w.context && w.context.path.endsWith('05-error-maps.ipynb')))"
)

RUN_ALL_AND_SAVE = f"""(async () => {{
  const w = {NOTEBOOK};
  window.jupyterapp.shell.activateById(w.id);
  await w.context.ready;
  await w.sessionContext.ready;
  await window.jupyterapp.commands.execute('notebook:run-all-cells');
  await w.context.save();  // as Lab's autosave or Ctrl-S would
  const cells = w.model.toJSON().cells.filter(c => c.cell_type === 'code');
  return {{
    path: w.context.path,
    errors: cells.flatMap(c => c.outputs).filter(o => o.output_type === 'error')
      .map(o => o.traceback.join(' ')),
    unexecuted: cells.filter(c => c.execution_count === null).length,
  }};
}})()"""

SCROLL_TO_MAP = f"""(async () => {{
  const notebook = {NOTEBOOK}.content;
  const index = notebook.widgets.findIndex(
    c => c.model.sharedModel.getSource().includes('notebook_view'));
  notebook.activeCellIndex = index;
  await notebook.scrollToItem(index, 'start');
  return index;
}})()"""

FRAME = "document.querySelector('.jp-OutputArea-output iframe[srcdoc]')"

CENTRE_ON = """(uuid => {{
  const frame = {frame};
  frame.scrollIntoView({{block: 'center'}});
  const point = frame.contentWindow.geoguesserCentre(uuid);
  const box = frame.getBoundingClientRect();
  return point && {{x: box.left + point.x, y: box.top + point.y}};
}})({uuid})"""

POPUP_VIEWS = f"""(async () => {{
  const frame = {FRAME};
  const popup = frame.contentDocument.querySelector('.leaflet-popup-content');
  const views = popup.querySelector('[role=img]');
  if (!views) return {{text: popup.textContent, width: 0}};
  const url = frame.contentWindow.getComputedStyle(views).backgroundImage
    .replace(/^url\\(["']?/, '').replace(/["']?\\)$/, '');
  const image = new frame.contentWindow.Image();
  image.src = url;
  try {{ await image.decode(); }} catch (error) {{ }}
  return {{text: popup.textContent, width: image.naturalWidth, scheme: url.split(':')[0]}};
}})()"""


async def click(page, x: float, y: float) -> None:
    for kind in ("mousePressed", "mouseReleased"):
        await page.call(
            "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
        )


def run_map_step(
    root: str, token: str, run_dir: Path, uuid: str, cwd: Path, shot: Path | None = None
):
    """Open step 05 of `run_dir` in Lab, Run All, save, click `uuid` on the inline map.

    Lab is rooted where `geoguesser open`, started in `cwd`, roots it (workflow.lab.lab_root).
    """
    from geoguesser.workflow.lab import lab_root

    tree = (run_dir / "05-error-maps.ipynb").relative_to(lab_root(run_dir, cwd)).as_posix()
    notebook = f"{root}lab/tree/{tree}"

    async def script(page):
        await page.wait_for(f"!!({NOTEBOOK} && {NOTEBOOK}.sessionContext)", timeout=180)
        ran = await page.evaluate(RUN_ALL_AND_SAVE)
        # reopen the saved notebook, as a user coming back to it does (trusted: Lab signed it)
        await page.evaluate("window.beforeReload = true")
        await page.call("Page.reload")
        ready = f"!window.beforeReload && !!({NOTEBOOK} && {NOTEBOOK}.context.isReady)"
        await page.wait_for(ready, timeout=180)
        for _ in range(30):  # Lab renders cells near the view only: bring the map's into it
            await page.evaluate(SCROLL_TO_MAP)
            await asyncio.sleep(2.0)
            if await page.evaluate(f"!!({FRAME} && {FRAME}.contentWindow.geoguesserCentre)"):
                break
        await asyncio.sleep(1.0)  # let the notebook settle around the output
        point = await page.evaluate(CENTRE_ON.format(frame=FRAME, uuid=json.dumps(uuid)))
        await asyncio.sleep(0.5)
        await click(page, point["x"], point["y"])
        await page.wait_for(f"{FRAME}.contentDocument.querySelector('.leaflet-popup-content')")
        views = await page.evaluate(POPUP_VIEWS)
        if shot is not None:
            await screenshot(page, shot)
        return ran, views

    return asyncio.run(open_page(f"{notebook}?token={token}", script, width=1280, height=1000))


TAB_VIEWS = """(() => {
  const popup = document.querySelector('.leaflet-popup-content');
  const views = popup && popup.querySelector('[role=img]');
  if (!views) return null;
  const url = getComputedStyle(views).backgroundImage.replace(/^url\\(["']?/, '')
    .replace(/["']?\\)$/, '');
  return new Promise(done => {
    const image = new Image();
    image.onload = () => done({text: popup.textContent, width: image.naturalWidth,
                               scheme: url.split(':')[0]});
    image.onerror = () => done({text: popup.textContent, width: 0, scheme: url.split(':')[0]});
    image.src = url;
  });
})()"""


def open_map_tab(root: str, token: str, run_dir: Path, uuid: str, cwd: Path) -> dict:
    """The inline copy as Lab's "Open in New Browser Tab" shows it: from /files/, logged in.

    Jupyter serves an HTML file there under a sandboxing Content-Security-Policy, so a page
    that fetched its view sheets would get no login with them (what the issue saw).
    """
    from geoguesser.workflow.lab import lab_root

    tree = (run_dir / "maps" / "errors-inline.html").relative_to(lab_root(run_dir, cwd))

    async def script(page):
        await page.wait_for("!!document.querySelector('.leaflet-popup-content')", timeout=120)
        return await page.wait_for(TAB_VIEWS, timeout=60)

    url = f"{root}files/{tree.as_posix()}?token={token}#uuid={uuid}"
    return asyncio.run(open_page(url, script, width=1200, height=800))


def worst_test_location(run_dir: Path) -> str:
    import pandas as pd

    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"uuid": str})
    test = predictions[predictions.split == "test"]
    return test.loc[test.error_km.idxmax(), "uuid"]


def main(run: str, out: str) -> None:
    """Step 05 of an existing run through Lab (run from the checkout), popup open, shot."""
    run_dir = Path(run).absolute()
    process, root, token = lab_in_background(run_dir, "05", Path.cwd())
    try:
        worst = worst_test_location(run_dir)
        ran, views = run_map_step(root, token, run_dir, worst, Path.cwd(), Path(out))
    finally:
        stop_lab(process)
    print(f"ran {ran['path']}: errors {ran['errors'] or 'none'}; popup views {views}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
