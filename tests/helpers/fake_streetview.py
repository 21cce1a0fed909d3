"""A local stand-in for the Street View Static API, on 127.0.0.1, for the downloader tests.

It speaks the metadata endpoint's JSON (OK, ZERO_RESULTS, REQUEST_DENIED, OVER_QUERY_LIMIT)
and serves small JPEGs for the image endpoint, and can be told to answer 429 or 500, to be
slow, to answer malformed metadata, or to drop a connection in the middle of an image. It
records every request so tests can count what was fetched.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import Counter

import numpy as np
from aiohttp import web
from PIL import Image

KEY = "test-key-3f9c2a7d1e"


def panorama_at(lat: float, lon: float) -> dict | None:
    """Points north of 45.5 have no panorama; others snap to a 0.05-degree lattice of panoramas."""
    if lat > 45.5:
        return None
    plat, plon = round(lat * 20) / 20, round(lon * 20) / 20
    return {"pano_id": f"pano_{plat:.2f}_{plon:.2f}", "lat": plat + 0.0001, "lng": plon - 0.0001}


def jpeg(seed: int, size: int = 24) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


class FakeStreetView:
    def __init__(self):
        self.failures: list[int] = []  # HTTP statuses to answer to the next requests, in order
        self.metadata_status: str | None = None  # force REQUEST_DENIED or OVER_QUERY_LIMIT
        self.metadata_body: bytes | None = None  # answer this instead (a malformed answer)
        self.delay_s = 0.0
        self.drop_images = 0  # how many image answers to cut off halfway
        self.always_429 = False
        # Endpoints ("metadata", "image") that answer nothing until stop(): a silent server
        # whatever the client's timeout and the machine's speed, unlike a long delay.
        self.held: set[str] = set()
        self.metadata_requests = 0
        self.image_requests = 0  # image requests received, answered or not
        self.images = Counter()  # (pano_id, heading) -> times served in full
        self.keys_seen: set[str] = set()
        self.lock = threading.Lock()

    async def metadata(self, request: web.Request) -> web.Response:
        failure = self._failure()
        if failure:
            return web.Response(status=failure)
        await self._hold("metadata")
        await asyncio.sleep(self.delay_s)
        self.metadata_requests += 1
        self.keys_seen.add(request.query.get("key", ""))
        if request.query.get("key") != KEY or self.metadata_status == "REQUEST_DENIED":
            return web.json_response(
                {"status": "REQUEST_DENIED", "error_message": "The provided API key is invalid."}
            )
        if self.metadata_status:
            return web.json_response({"status": self.metadata_status})
        if self.metadata_body is not None:
            return web.Response(body=self.metadata_body, content_type="application/json")
        lat, lon = map(float, request.query["location"].split(","))
        pano = panorama_at(lat, lon)
        if pano is None:
            return web.json_response({"status": "ZERO_RESULTS"})
        location = {"lat": pano["lat"], "lng": pano["lng"]}
        answer = {
            "status": "OK",
            "pano_id": pano["pano_id"],
            "location": location,
            "date": "2021-07",
        }
        return web.json_response(answer)

    async def image(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            self.image_requests += 1
        failure = self._failure()
        if failure:
            return web.Response(status=failure)
        await self._hold("image")
        await asyncio.sleep(self.delay_s)
        pano, heading = request.query["pano"], int(request.query["heading"])
        body = jpeg(hash((pano, heading)) % 2**32)
        with self.lock:
            drop = self.drop_images > 0
            self.drop_images -= drop
        if drop:
            response = web.StreamResponse(
                headers={"Content-Type": "image/jpeg", "Content-Length": str(len(body))}
            )
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            request.transport.close()
            return response
        with self.lock:
            self.images[(pano, heading)] += 1
        return web.Response(body=body, content_type="image/jpeg")

    async def _hold(self, endpoint: str) -> None:
        if endpoint in self.held:
            await self.released.wait()

    def _failure(self) -> int | None:
        with self.lock:
            if self.always_429:
                return 429
            return self.failures.pop(0) if self.failures else None

    def start(self) -> str:
        started = threading.Event()

        def serve():
            self.loop = asyncio.new_event_loop()
            self.released = asyncio.Event()
            app = web.Application()
            app.router.add_get("/maps/api/streetview/metadata", self.metadata)
            app.router.add_get("/maps/api/streetview", self.image)
            self.runner = web.AppRunner(app)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        started.wait(10)
        return f"http://127.0.0.1:{self.port}/maps/api"

    def stop(self) -> None:
        """Close the listening socket (connections are then refused) and end the loop."""
        self.loop.call_soon_threadsafe(self.released.set)  # held requests end, so cleanup can
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
