"""Headless Chromium, network cut, driven over the DevTools protocol (aiohttp's websocket).

`page_session` opens a URL on 127.0.0.1, can run JavaScript and take a screenshot, and
records every URL the page asked for, so a test can prove the page fetched nothing else.
Run as a script it serves a checkpoint and writes the README's screenshot:

    .venv/bin/python tests/helpers/browser.py runs/demo/checkpoints/last.ckpt figures/serve-page.png
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers.* as a script
from helpers.ports import free_port, wait_until_answering  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CUT_NETWORK = [
    # every host name fails to resolve, and anything not on 127.0.0.1 goes to a dead proxy
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
]


def require_program(path: str, what: str) -> None:
    """Skip the calling test without `path` on a developer's machine; fail under CI=true.

    `.ci/run` installs every system program the tests drive (Chromium, SLURM, munge), so in CI
    a missing one is a broken set-up, not a reason to pass without checking anything.
    """
    if Path(path).exists() or shutil.which(path):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: {path} is missing under CI=true (.ci/run installs it)")
    pytest.skip(f"{what}: needs {path}")


def require_chromium() -> None:
    require_program(CHROMIUM, "headless Chromium")


# What DevTools answers while the page is between documents (not an error of the page's own).
NAVIGATING = (
    "Inspected target navigated or closed",
    "Execution context was destroyed",
    "Cannot find context with specified id",
)


class Page:
    def __init__(self, ws):
        self.ws, self.next_id, self.requested = ws, 0, []

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("method") == "Network.requestWillBeSent":
                self.requested.append(message["params"]["request"]["url"])
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 120.0):  # a hang, not a pace
        """Poll `expression` until it is truthy. A page that is navigating (a reload, a login
        redirect) has no context to evaluate in for a moment: that reads as "not yet"."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except RuntimeError as exc:
                if not any(sign in str(exc) for sign in NAVIGATING):
                    raise
                value = None
            if value:
                return value
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the page never made {expression} true")


async def _devtools_url(profile: Path, process: subprocess.Popen) -> str:
    port_file = profile / "DevToolsActivePort"
    for _ in range(1200):  # 120 s: two suites at once on two cores start Chromium slowly
        if port_file.exists() and port_file.read_text().strip():
            return f"http://127.0.0.1:{port_file.read_text().split()[0]}"
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited: {process.stderr.read().decode()[-500:]}")
        await asyncio.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def open_page(url: str, script, width: int = 1200, height: int = 720):
    """Load `url` in headless Chromium with no network, then `await script(page)`."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = subprocess.Popen(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--remote-debugging-port=0", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", *CUT_NETWORK, "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            devtools = await _devtools_url(Path(profile), process)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{devtools}/json") as response:
                    target = next(t for t in await response.json() if t["type"] == "page")
                async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    page = Page(ws)
                    await page.call("Network.enable")
                    await page.call("Page.enable")
                    await page.call(
                        "Emulation.setDeviceMetricsOverride",
                        width=width, height=height, deviceScaleFactor=1, mobile=False,
                    )  # fmt: skip
                    await page.call("Page.navigate", url=url)
                    await page.wait_for("document.readyState === 'complete'")
                    return await script(page)
        finally:
            process.terminate()
            process.wait(timeout=10)


def send_photos_js(photos: list[bytes]) -> str:
    """JavaScript that drops these JPEGs on the page, as a user would, and waits for it."""
    encoded = json.dumps([base64.b64encode(p).decode() for p in photos])
    return f"""(async () => {{
      const files = {encoded}.map((b64, i) => new File(
        [Uint8Array.from(atob(b64), c => c.charCodeAt(0))], 'view' + i + '.jpg',
        {{type: 'image/jpeg'}}));
      await window.geoguesserSend(files);
      return document.getElementById('result').textContent
        || document.getElementById('status').textContent;
    }})()"""


async def screenshot(page: Page, out: Path) -> Path:
    await asyncio.sleep(0.5)  # let Leaflet finish drawing the canvas
    shot = await page.call("Page.captureScreenshot", format="png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    return out


def serve_in_background(checkpoint: Path, port: int, extra=()) -> subprocess.Popen:
    """`geoguesser serve` (with `extra` options) as its own process, once /health answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "geoguesser.cli", "serve", "--checkpoint", str(checkpoint),
         "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    wait_until_answering(
        process,
        f"http://127.0.0.1:{port}/health",
        process.stderr,
        "geoguesser serve exited",
        "geoguesser serve did not answer /health",
    )
    return process


def main(checkpoint: str, out: str, dataset: str = "data/synthetic") -> None:
    """Serve `checkpoint`, drop the four views of a synthetic location on the page, shoot."""
    import pandas as pd

    from geoguesser.data.layout import view_paths

    table = pd.read_csv(Path(dataset) / "data.csv", dtype={"uuid": str})
    photos = [path.read_bytes() for path in view_paths(dataset, table.uuid.iloc[0])]
    port = free_port()
    server = serve_in_background(Path(checkpoint), port)

    async def script(page: Page):
        print(await page.evaluate(send_photos_js(photos)))
        await screenshot(page, Path(out))
        return [u for u in page.requested if not u.startswith(f"http://127.0.0.1:{port}/")]

    try:
        elsewhere = asyncio.run(open_page(f"http://127.0.0.1:{port}/", script))
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"wrote {out}; requests beyond the server: {elsewhere or 'none'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
