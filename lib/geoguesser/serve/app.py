"""The FastAPI application: GET /health, /models and the page, POST /predict, behind the guard.

POST /predict takes one to four photographs (four: N, E, S, W) and answers where the model
places them, with its expected error and likeliest cells; GET /models lists what it can
serve (and what it cannot, with the reason), GET /health says it is up, GET / is a page to
drop photographs on and see the guess on a map, with no network (Leaflet and the border are
inlined, as in the error maps).

Uploads are read into memory, capped, and never written to disk. Each photograph is decoded
on a worker thread, at most DECODE_SLOTS at once and never past MAX_DECODED_PIXELS, so memory
stays flat however many clients send large images; the views go to one `MicroBatcher`, which
waits a few milliseconds for more requests and runs them through the model in one forward
pass. A client's mistake (not an image, too large, too many files, an unknown model) is a 4xx
with one sentence; a checkpoint that cannot load is a 503 with one sentence; nothing a
request sends can stop the server or put a traceback in its log.
"""

from __future__ import annotations

import numpy as np
from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from geoguesser.serve.bad_request import BadRequest
from geoguesser.serve.batcher import MicroBatcher
from geoguesser.serve.guards import Guard, Trust, origin_text
from geoguesser.serve.limits import (
    BATCH_WAIT_MS,
    DECODE_SLOTS,
    HOST,
    MAX_BATCH,
    MAX_UPLOAD_BYTES,
    MAX_VIEWS,
    PORT,
)
from geoguesser.serve.page import page_html
from geoguesser.serve.store import ModelStore, views_problem
from geoguesser.serve.uploads import decode_upload, read_form


def guard(app: FastAPI, trust: Trust) -> None:
    """Answer only whom `trust` names; pages of an allowed origin may also read the answers."""
    if trust.origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=sorted(map(origin_text, trust.origins)),
            allow_methods=["GET", "POST"],
        )  # fmt: skip
    app.add_middleware(Guard, trust=trust)


async def uploaded_views(request: Request, store: ModelStore, max_bytes: int, decoding):
    """(model name or None, the views as a (V, 3, H, W) uint8 tensor) of one POST /predict."""
    import torch

    form = await read_form(request, max_bytes)
    files = [item for key, item in form.multi_items() if key == "images"]
    uploads = [item for item in files if hasattr(item, "read")]
    if len(uploads) != len(files) or not uploads:
        raise BadRequest("send one to four image files in the form field images")
    if len(uploads) > MAX_VIEWS:
        raise BadRequest(f"at most {MAX_VIEWS} images per request (N, E, S, W)")
    name = form.get("model") or None
    if name is not None and not isinstance(name, str):
        raise BadRequest("the field model names a model; it is not a file")
    model = await to_thread.run_sync(store.get, name)  # a first load takes seconds
    problem = views_problem(model, len(uploads))
    if problem:
        raise BadRequest(problem, 422)
    size = model.settings.image_size
    views = []
    for i, upload in enumerate(uploads):
        data = await upload.read()
        # On a worker thread (PIL lets go of the GIL), so the loop keeps accepting; at
        # most `decode_slots` at once, however many requests are waiting.
        views.append(
            await to_thread.run_sync(
                decode_upload, data, upload.filename or f"image {i + 1}", size, limiter=decoding
            )
        )
    return name, torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous()


def create_app(
    store: ModelStore,
    top_k: int | None = None,
    wait_s: float = BATCH_WAIT_MS / 1000,
    max_batch: int = MAX_BATCH,
    max_bytes: int = MAX_UPLOAD_BYTES,
    trust: Trust | None = None,
    decode_slots: int = DECODE_SLOTS,
):
    """The FastAPI application serving `store`'s models.

    `trust` says whom it answers (default: the local names at PORT, as `geoguesser serve`
    with no options); at most `decode_slots` photographs are decoded at once.
    """
    from geoguesser.config import TOP_CELLS

    app = FastAPI(title="geoguesser", docs_url=None, redoc_url=None)
    guard(app, trust or Trust.of(HOST, PORT))
    batcher = MicroBatcher(store, top_k or TOP_CELLS, wait_s, max_batch)
    decoding = CapacityLimiter(decode_slots)
    app.state.batcher, app.state.store, app.state.decoding = batcher, store, decoding

    @app.exception_handler(BadRequest)
    async def _bad_request(request, error: BadRequest):
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": len(store.paths), "default": store.default}

    @app.get("/models")
    async def models():
        return {"default": store.default, "models": store.names(), "unusable": store.unusable}

    @app.post("/predict")
    async def predict(request: Request):
        name, tensor = await uploaded_views(request, store, max_bytes, decoding)
        return await batcher.submit(name or store.default, tensor)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return page_html(store)

    return app
