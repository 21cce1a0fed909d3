"""geoguesser serve: the HTTP API with FastAPI's test client, its bad requests and its CLI."""

import asyncio
import io
import socket

import browser
import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from test_maps import network_urls

from conftest import tiny_config
from geoguesser import serve
from geoguesser.backbones import IMAGENET_MEAN, IMAGENET_STD
from geoguesser.cli import main
from geoguesser.geography import Geography
from geoguesser.model import GeoLocator, write_checkpoint


def save_checkpoint(path, enriched, **settings):
    """An untrained tiny model saved as training saves it: enough to serve."""
    table, cells, scaler, border = enriched
    torch.manual_seed(0)
    model = GeoLocator(
        Geography.of(cells, scaler, border),
        tiny_config(**settings),
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    return write_checkpoint(model, path)


@pytest.fixture(scope="module")
def models(enriched, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_checkpoint(root / "mean.ckpt", enriched, fusion="mean")
    save_checkpoint(root / "more" / "concat.ckpt", enriched, fusion="concat")
    save_checkpoint(root / "regression.ckpt", enriched, fusion="mean", objective="regression")
    return root


@pytest.fixture(scope="module")
def app(models):
    return serve.create_app(serve.ModelStore(models / "mean.ckpt", models))


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def jpeg(seed: int, size: int = 48) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def images(n: int, seed: int = 0) -> list:
    return [("images", (f"view{i}.jpg", jpeg(seed + i), "image/jpeg")) for i in range(n)]


def test_health_and_models_list_the_folder_and_the_default(client):
    assert client.get("/health").json() == {"status": "ok", "models": 3, "default": "mean.ckpt"}
    assert client.get("/models").json() == {
        "default": "mean.ckpt",
        "models": ["mean.ckpt", "more/concat.ckpt", "regression.ckpt"],
    }


@pytest.mark.parametrize("n", [1, 2, 4])
def test_predict_places_one_to_four_photographs_with_its_confidence(client, n):
    response = client.post("/predict", files=images(n))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "mean.ckpt" and answer["views"] == n
    assert 42 < answer["latitude"] < 47 and 13 < answer["longitude"] < 20
    assert answer["expected_error_km"] > 0
    cells = answer["top_cells"]
    assert len(cells) == 3 and sum(c["probability"] for c in cells) <= 1 + 1e-6
    assert [c["probability"] for c in cells] == sorted(c["probability"] for c in cells)[::-1]
    for cell in cells:  # the square the page shades, around its centroid's neighbourhood
        lats, lons = np.array(cell["outline"]).T
        assert lats.min() - 0.5 < cell["latitude"] < lats.max() + 0.5
        assert lons.min() - 0.5 < cell["longitude"] < lons.max() + 0.5


def test_the_model_field_picks_a_model_and_concat_needs_four_views(client):
    four = client.post("/predict", files=images(4), data={"model": "more/concat.ckpt"})
    assert four.status_code == 200 and four.json()["model"] == "more/concat.ckpt"
    two = client.post("/predict", files=images(2), data={"model": "more/concat.ckpt"})
    assert two.status_code == 422
    assert two.json()["detail"] == (
        "this model joins the views by concatenation and needs all four (N, E, S, W); got 2"
    )
    regression = client.post("/predict", files=images(1), data={"model": "regression.ckpt"})
    assert regression.status_code == 200
    assert regression.json()["expected_error_km"] is None and regression.json()["top_cells"] == []


def bad_requests():
    return [
        ({"files": [("images", ("a.txt", b"hello", "text/plain"))]}, 400, "a.txt: not an image"),
        ({"files": images(5)}, 400, "at most 4 images per request (N, E, S, W)"),
        ({"files": images(1), "data": {"model": "nope"}}, 404, "unknown model 'nope'"),
        ({"files": [("other", ("x.jpg", jpeg(0), "image/jpeg"))]}, 400, "one to four image files"),
        (
            {"content": b"{}", "headers": {"content-type": "application/json"}},
            415,
            "in the field images",
        ),
    ]


@pytest.mark.parametrize("request_, status, sentence", bad_requests())
def test_a_bad_request_is_one_sentence_and_the_server_keeps_serving(
    client, request_, status, sentence
):
    response = client.post("/predict", **request_)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert sentence in detail and "\n" not in detail and "Traceback" not in detail
    assert client.post("/predict", files=images(1)).status_code == 200


def test_a_request_over_the_size_cap_is_refused(models):
    small = serve.create_app(serve.ModelStore(models / "mean.ckpt"), max_bytes=10_000)
    big = [("images", ("big.png", b"x" * 20_000, "image/png"))]
    response = TestClient(small).post("/predict", files=big)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]


def test_uploads_are_never_written_to_disk(client, monkeypatch):
    import starlette.formparsers

    class NoDisk(starlette.formparsers.SpooledTemporaryFile):
        def rollover(self):
            raise AssertionError("an upload was about to be written to disk")

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", NoDisk)
    pixels = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # > 1 MB: Starlette's spooling limit
    assert buffer.tell() > 1024 * 1024
    files = [("images", ("big.png", buffer.getvalue(), "image/png"))]
    assert client.post("/predict", files=files).status_code == 200


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers(models):
    app = serve.create_app(serve.ModelStore(models / "mean.ckpt"), wait_s=0.05)

    async def ask_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(client.post("/predict", files=images(2, seed=10 * i)) for i in range(8))
            )

    batched = [r.json() for r in asyncio.run(ask_all())]
    assert max(app.state.batcher.batch_sizes) > 1 and sum(app.state.batcher.batch_sizes) == 8
    alone = TestClient(serve.create_app(serve.ModelStore(models / "mean.ckpt")))
    for i, answer in enumerate(batched):
        single = alone.post("/predict", files=images(2, seed=10 * i)).json()
        assert answer["latitude"] == pytest.approx(single["latitude"], abs=1e-6)
        assert answer["expected_error_km"] == pytest.approx(single["expected_error_km"], rel=1e-5)


def test_the_page_loads_nothing_from_the_network(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert network_urls(page.text) == set()
    assert '"type": "Polygon"' in page.text or '"type": "MultiPolygon"' in page.text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_bad_command_lines_are_one_line_exit_2(models, tmp_path, capsys):
    cases = [
        (["--checkpoint", str(tmp_path / "none.ckpt")], "none.ckpt: checkpoint not found"),
        (["--checkpoint-dir", str(tmp_path / "nodir")], "nodir: --checkpoint-dir is not a folder"),
        (["--checkpoint-dir", str(tmp_path)], "no .ckpt file in this folder"),
        ([], "give --checkpoint CKPT or --checkpoint-dir DIR"),
        (["--checkpoint", str(models / "mean.ckpt"), "--top-cells", "0"], "--top-cells 0"),
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases.append((["--checkpoint", str(models / "mean.ckpt"), "--port", str(port)], "in use"))
        for args, message in cases:
            assert main(["serve", "--port", str(free_port()), *args]) == 2, args
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("geoguesser serve: ") and message in err[0]


def test_the_page_in_headless_chromium_shows_the_guess_with_no_network(models, tmp_path):
    browser.require_chromium()
    port = free_port()
    server = browser.serve_in_background(models / "mean.ckpt", port)

    async def script(page):
        text = await page.evaluate(browser.send_photos_js([jpeg(1), jpeg(2)]))
        shaded = await page.evaluate("document.querySelectorAll('#result tr').length")
        loaded = await page.evaluate("typeof L === 'object' && !!document.querySelector('canvas')")
        await browser.screenshot(page, tmp_path / "page.png")
        return text, shaded, loaded, page.requested

    try:
        text, rows, loaded, requested = asyncio.run(
            browser.open_page(f"http://127.0.0.1:{port}/", script)
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert text.startswith("guess ") and "expected error" in text and "2 view(s)" in text
    assert rows == 4 and loaded  # a header and three cells; Leaflet drew its canvas
    own = f"http://127.0.0.1:{port}/"
    assert [url for url in requested if not url.startswith((own, "data:", "blob:"))] == []
    with Image.open(tmp_path / "page.png") as shot:
        assert shot.size == (1200, 720)
