"""geoguesser serve: the HTTP API with FastAPI's test client, its bad requests and its CLI."""

import asyncio
import io
import signal
import socket
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from geoguesser.cli import main
from geoguesser.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from geoguesser.model.checkpoint import write_checkpoint
from geoguesser.model.geography import Geography
from geoguesser.model.locator import GeoLocator
from geoguesser.serve import app as serve
from geoguesser.serve import limits, uploads
from geoguesser.serve.guards import Trust
from geoguesser.serve.store import ModelStore
from helpers import browser
from helpers.configs import tiny_config
from helpers.pages import network_urls
from helpers.ports import free_port


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
    return serve.create_app(ModelStore(models / "mean.ckpt", models))


LOCAL = f"http://127.0.0.1:{limits.PORT}"  # where the server is reached: its Host is answered


def local(app) -> TestClient:
    return TestClient(app, base_url=LOCAL)


@pytest.fixture(scope="module")
def client(app):
    return local(app)


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
        "unusable": {},
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
    small = serve.create_app(ModelStore(models / "mean.ckpt"), max_bytes=10_000)
    big = [("images", ("big.png", b"x" * 20_000, "image/png"))]
    response = local(small).post("/predict", files=big)
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
    app = serve.create_app(ModelStore(models / "mean.ckpt"), wait_s=0.05)

    async def ask_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as client:
            return await asyncio.gather(
                *(client.post("/predict", files=images(2, seed=10 * i)) for i in range(8))
            )

    batched = [r.json() for r in asyncio.run(ask_all())]
    assert max(app.state.batcher.batch_sizes) > 1 and sum(app.state.batcher.batch_sizes) == 8
    alone = local(serve.create_app(ModelStore(models / "mean.ckpt")))
    for i, answer in enumerate(batched):
        single = alone.post("/predict", files=images(2, seed=10 * i)).json()
        assert answer["latitude"] == pytest.approx(single["latitude"], abs=1e-6)
        assert answer["expected_error_km"] == pytest.approx(single["expected_error_km"], rel=1e-5)


def test_the_page_loads_nothing_from_the_network(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert network_urls(page.text) == set()
    assert '"type": "Polygon"' in page.text or '"type": "MultiPolygon"' in page.text


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


# --- whom the server answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, answered",
    [
        (f"127.0.0.1:{limits.PORT}", True),
        (f"localhost:{limits.PORT}", True),
        (f"LocalHost:{limits.PORT}", True),
        (f"[::1]:{limits.PORT}", True),
        ("127.0.0.1:9", False),  # another port: another server's name
        (f"evil.example:{limits.PORT}", False),  # a DNS-rebinding page's name for 127.0.0.1
        ("evil.example", False),
        (f"user@127.0.0.1:{limits.PORT}", False),
        ("", False),
    ],
)
def test_only_requests_addressed_to_the_server_are_answered(client, host, answered):
    response = client.get("/health", headers={"host": host})
    assert (response.status_code == 200) == answered, response.text
    if not answered:
        assert response.status_code == 400 and "--allow-host" in response.json()["detail"]
    posted = client.post("/predict", files=images(1), headers={"host": host})
    assert (posted.status_code == 200) == answered


def test_allow_host_adds_a_name_and_a_bind_address_is_its_own_name(models):
    trust = Trust.of("192.168.1.5", 8001, allow_hosts=["box.lan", "proxy.lan:443"])
    app = serve.create_app(ModelStore(models / "mean.ckpt"), trust=trust)
    client = TestClient(app, base_url="http://192.168.1.5:8001")
    assert client.get("/health").status_code == 200
    for host, status in [
        ("box.lan:8001", 200),
        ("proxy.lan:443", 200),
        ("box.lan:8000", 400),
        ("other.lan:8001", 400),
        ("localhost:8001", 200),
    ]:
        assert client.get("/health", headers={"host": host}).status_code == status, host


def test_a_post_from_another_sites_page_is_refused_unless_allowed(models):
    app = serve.create_app(ModelStore(models / "mean.ckpt"))
    client = local(app)
    foreign = {"origin": "http://evil.example"}
    refused = client.post("/predict", files=images(1), headers=foreign)
    assert refused.status_code == 403 and "--allow-origin" in refused.json()["detail"]
    assert app.state.batcher.batch_sizes == []  # refused before the model saw it
    for origin in [
        "null",
        "https://127.0.0.1:8000",
        f"http://127.0.0.1:{limits.PORT}.evil.example",
    ]:
        assert (
            client.post("/predict", files=images(1), headers={"origin": origin}).status_code == 403
        )
    assert client.get("/health", headers=foreign).status_code == 200  # reading is not acting
    own = client.post("/predict", files=images(1), headers={"origin": LOCAL})
    assert own.status_code == 200  # the server's own page

    trust = Trust.of(limits.HOST, limits.PORT, allow_origins=["HTTP://Lab.Example:3000/"])
    allowed = local(serve.create_app(ModelStore(models / "mean.ckpt"), trust=trust))
    answer = allowed.post(
        "/predict", files=images(1), headers={"origin": "http://lab.example:3000"}
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "http://lab.example:3000"
    other = allowed.post("/predict", files=images(1), headers={"origin": "http://lab.example"})
    assert other.status_code == 403


# --- checkpoints that cannot load ----------------------------------------------------------------


def broken_checkpoints(good, folder):
    """Each way a checkpoint file can fail to load, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    saved = torch.load(good, weights_only=True)
    torch.save({k: v for k, v in saved.items() if k != "hyper_parameters"}, folder / "no-hp.ckpt")
    state = dict(saved["state_dict"])
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    torch.save({**saved, "state_dict": state}, folder / "shape.ckpt")
    (folder / "folder.ckpt").mkdir()
    return ["folder.ckpt", "no-hp.ckpt", "random.ckpt", "shape.ckpt"]


def test_a_checkpoint_that_cannot_load_is_listed_unusable_and_answered_in_one_sentence(
    models, tmp_path, capfd
):
    broken = broken_checkpoints(models / "mean.ckpt", tmp_path / "runs")
    app = serve.create_app(ModelStore(models / "mean.ckpt", tmp_path / "runs"))
    client = local(app)
    for name in broken:
        response = client.post("/predict", files=images(1), data={"model": name})
        assert response.status_code == 503, (name, response.text)
        detail = response.json()["detail"]
        assert detail.startswith(f"model {name!r} cannot be used: ") and "\n" not in detail
        assert str(tmp_path) not in detail  # the server's paths are its own business
    listed = client.get("/models").json()
    assert sorted(listed["unusable"]) == broken and listed["default"] == "mean.ckpt"
    assert all("\n" not in reason for reason in listed["unusable"].values())
    assert client.post("/predict", files=images(1)).status_code == 200
    assert "Traceback" not in "".join(capfd.readouterr())


def test_a_folder_of_checkpoints_serves_the_first_that_loads(models, tmp_path):
    broken_checkpoints(models / "mean.ckpt", tmp_path / "runs")
    (tmp_path / "runs" / "zz.ckpt").write_bytes((models / "mean.ckpt").read_bytes())
    store = ModelStore(None, tmp_path / "runs")
    store.load_default()
    assert store.default == "zz.ckpt"
    assert sorted(store.unusable) == ["folder.ckpt", "no-hp.ckpt", "random.ckpt", "shape.ckpt"]


def test_serve_with_a_checkpoint_that_cannot_load_is_one_line_exit_2(models, tmp_path, capsys):
    broken_checkpoints(models / "mean.ckpt", tmp_path)
    for name in ["random.ckpt", "no-hp.ckpt", "shape.ckpt", "folder.ckpt"]:
        args = ["serve", "--port", str(free_port()), "--checkpoint", str(tmp_path / name)]
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"geoguesser serve: {tmp_path / name}: ")
    dir_only = ["serve", "--port", str(free_port()), "--checkpoint-dir", str(tmp_path)]
    assert main(dir_only) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint here loads" in err[0]


# --- numbers on the command line -----------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [
        ("--port", "70000"),
        ("--port", "-1"),
        ("--max-batch", "0"),
        ("--max-batch", "100000000"),
        ("--batch-wait-ms", "nan"),
        ("--batch-wait-ms", "inf"),
        ("--batch-wait-ms", "-1"),
        ("--batch-wait-ms", "1e9"),
        ("--max-upload-mb", "0"),
        ("--max-upload-mb", "nan"),
        ("--max-upload-mb", "1e12"),
        ("--top-cells", "0"),
        ("--top-cells", "100000"),
    ],
)
def test_every_number_is_checked_before_anything_loads(tmp_path, capsys, option, value):
    # The checkpoint does not exist: the number must be the one problem found, and first.
    args = ["serve", "--checkpoint", str(tmp_path / "none.ckpt"), option, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"geoguesser serve: {option} "), err
    assert "must be a number from" in err[0]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--allow-host", "evil.example/path"),
        ("--allow-host", "a b"),
        ("--allow-origin", "http://lab.example/page"),
        ("--allow-origin", "lab.example"),
        ("--allow-origin", "ftp://lab.example"),
    ],
)
def test_a_bad_allowed_name_is_one_line_before_anything_loads(tmp_path, capsys, option, value):
    args = ["serve", "--checkpoint", str(tmp_path / "none.ckpt"), option, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"geoguesser serve: {option} {value!r}: "), err


def test_the_help_shows_the_serve_modules_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in (limits.PORT, limits.MAX_BATCH, limits.BATCH_WAIT_MS, limits.MAX_UPLOAD_MB):
        assert f"(default {default})" in text


# --- what it spends ------------------------------------------------------------------------------


def encoded(size: int, format: str) -> bytes:
    pixels = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def test_a_png_that_would_decode_past_the_cap_is_refused_before_decoding(client, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(uploads, "MAX_DECODED_PIXELS", 100 * 100)
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real_load(self)
    )
    png = client.post("/predict", files=[("images", ("big.png", encoded(400, "PNG"), "i/p"))])
    assert png.status_code == 413, png.text
    assert png.json()["detail"] == (
        "big.png: 400 x 400 pixels is too large to decode in this format (at most 10,000 pixels)"
    )
    assert decoded == []  # refused from its header, not after decoding it
    # A JPEG of the same size decodes at an eighth of each side (draft mode): 50 x 50.
    jpg = client.post("/predict", files=[("images", ("big.jpg", encoded(400, "JPEG"), "i/j"))])
    assert jpg.status_code == 200, jpg.text
    assert set(decoded) == {(50, 50)}


def test_no_more_photographs_decode_at_once_than_the_decode_slots(models, monkeypatch):
    lock, in_flight, most = threading.Lock(), [0], [0]
    real = serve.decode_upload

    def counted(*args):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.05)  # long enough for the other requests to arrive meanwhile
            return real(*args)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(serve, "decode_upload", counted)
    app = serve.create_app(ModelStore(models / "mean.ckpt"), decode_slots=2)

    async def ask_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as client:
            return await asyncio.gather(
                *(client.post("/predict", files=images(2, seed=i)) for i in range(8))
            )

    assert [r.status_code for r in asyncio.run(ask_all())] == [200] * 8
    assert 1 <= most[0] <= 2


# --- clients that misbehave ----------------------------------------------------------------------


def test_a_client_that_hangs_up_mid_upload_is_no_error(app):
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", limits.PORT),
        "headers": [
            (b"host", f"127.0.0.1:{limits.PORT}".encode()),
            (b"content-type", b"multipart/form-data; boundary=xyz"),
            (b"content-length", b"100000"),
        ],
    }  # fmt: skip
    messages = [{"type": "http.request", "body": b"--xyz\r\n", "more_body": True}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # before: ClientDisconnect, a traceback in the log
    assert sent == []  # nobody to answer


JPEG_BYTES, PNG_BYTES = jpeg(7, 40), encoded(40, "PNG")


def damaged_images():
    """A real JPEG or PNG cut short or with bytes overwritten somewhere."""
    return st.tuples(
        st.sampled_from([JPEG_BYTES, PNG_BYTES]), st.integers(0, 4000), st.binary(max_size=16)
    ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :])


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    files=st.lists(
        st.tuples(
            st.sampled_from(["images", "images", "model", "other"]),
            st.text(max_size=20),
            st.one_of(st.binary(max_size=2000), damaged_images()),
            st.sampled_from(["image/jpeg", "image/png", "application/octet-stream", "x"]),
        ),
        max_size=5,
    ),
    fields=st.dictionaries(
        st.sampled_from(["model", "images", "x", ""]), st.text(max_size=30), max_size=3
    ),
)
def test_arbitrary_uploads_get_a_2xx_or_4xx_and_the_server_stays_up(client, files, fields):
    form = [(key, (name, data, kind)) for key, name, data, kind in files]
    response = client.post("/predict", files=form or None, data=fields or None)
    assert 200 <= response.status_code < 500, response.text
    if response.status_code >= 400:
        assert "\n" not in response.json()["detail"]
    assert client.get("/health").status_code == 200


def raw_request(port: int, head: str, body: bytes = b"") -> socket.socket:
    """A connection that has sent `head` (and `body`) and is left open."""
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return conn


def upload_head(port: int, length: int) -> str:
    return (
        f"POST /predict HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Length: {length}\n"
        "Content-Type: multipart/form-data; boundary=xyz\n"
    )


def stopped_by_sigterm(server) -> str:
    """SIGTERM `server`; its log once it has exited (a generous timeout only against hanging)."""
    server.send_signal(signal.SIGTERM)
    try:
        _, err = server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        pytest.fail("geoguesser serve did not stop on SIGTERM")
    return err


def test_sigterm_stops_the_server_idle(models):
    port = free_port()
    err = stopped_by_sigterm(browser.serve_in_background(models / "mean.ckpt", port))
    assert "Traceback" not in err


def test_sigterm_stops_the_server_mid_batch_and_mid_upload_with_no_traceback(models):
    port = free_port()
    server = browser.serve_in_background(models / "mean.ckpt", port, ["--batch-wait-ms", "1000"])
    connections = []
    try:
        # Clients that hang up mid-upload, send a broken form or a foreign Host: quiet.
        raw_request(port, upload_head(port, 100_000), b"--xyz\r\n").close()
        bad_form = raw_request(port, upload_head(port, 20), b"--nope\r\n\r\nnot a form")
        foreign = raw_request(port, "GET /health HTTP/1.1\nHost: evil.example\n")
        connections += [bad_form, foreign]
        assert b" 400 " in bad_form.recv(4096).split(b"\r\n")[0]
        assert b" 400 " in foreign.recv(4096).split(b"\r\n")[0]
        # Then: one request waiting in the batcher, one upload stalled halfway, an idle client.
        form = httpx.Request("POST", f"http://127.0.0.1:{port}/predict", files=images(1))
        head = "".join(f"{k}: {v}\n" for k, v in form.headers.items())
        connections.append(raw_request(port, f"POST /predict HTTP/1.1\n{head}", form.read()))
        connections.append(raw_request(port, upload_head(port, 100_000), b"--xyz\r\n"))
        idle = raw_request(port, f"GET /health HTTP/1.1\nHost: 127.0.0.1:{port}\n")
        connections.append(idle)
        assert b" 200 " in idle.recv(4096).split(b"\r\n")[0]  # the others are in by now
        err = stopped_by_sigterm(server)
    finally:
        server.kill()  # if a check above failed; a no-op once it has stopped
        for conn in connections:
            conn.close()
    assert "Traceback" not in err and "Exception" not in err, err


def test_a_contrastive_tta_model_serves_what_it_predicts_in_memory(enriched, tmp_path):
    """The gallery and the checkpoint's train.tta travel with it: the server's answer is the
    loaded model's own, with its top gallery points' cells listed."""
    from geoguesser.model.checkpoint import load_checkpoint
    from geoguesser.model.gallery import give_gallery

    table, cells, scaler, border = enriched
    torch.manual_seed(0)
    settings = tiny_config(objective="contrastive", fusion="mean", tta="mirror")
    model = GeoLocator(Geography.of(cells, scaler, border), settings, IMAGENET_MEAN, IMAGENET_STD)
    x, y = scaler.inverse(table.x_norm.to_numpy(), table.y_norm.to_numpy())
    give_gallery(model, np.column_stack([x, y]))
    path = write_checkpoint(model, tmp_path / "contrastive.ckpt")
    files = images(4, seed=3)
    answer = local(serve.create_app(ModelStore(path, tmp_path))).post("/predict", files=files)
    assert answer.status_code == 200, answer.text
    views = [uploads.decode_upload(data, name, settings.image_size) for _, (name, data, _) in files]
    batch = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2)[None]
    expected = load_checkpoint(path).locate(batch)
    got = answer.json()
    # float32 passes on the server's worker thread: the same to well under a metre
    assert got["latitude"] == pytest.approx(float(expected["lat"][0]), abs=1e-5)
    assert got["longitude"] == pytest.approx(float(expected["lon"][0]), abs=1e-5)
    assert got["expected_error_km"] == pytest.approx(float(expected["expected_error_km"][0]), 1e-4)
    assert got["top_cells"][0]["label"] == int(expected["top1_label"][0])
