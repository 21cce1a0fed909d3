"""The Street View Static API client: one answer per call, with retries and a request rate.

Requests are spaced by a request-rate limit (aiolimiter) and retried with exponential
backoff and jitter (tenacity) on 429, 5xx, timeouts and broken connections, decided by the
exception's type and the HTTP status, never by its text. What does not pass becomes a
`Stop`, which ends the whole download.

The API key is sent only as a request parameter and never printed, logged or written:
error messages are built here, never copied from exceptions (whose text may carry the
request URL).
"""

from __future__ import annotations

import contextlib
import json
from urllib.parse import urlsplit

from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from geoguesser.data.layout import check_image


class Stop(Exception):
    """A condition that ends the whole download (bad key, quota, network): message is key-free."""


class _Transient(Exception):
    """A failure worth another try."""


class _HTTPStatus(_Transient):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


class _BadImage(_Transient):
    """An image answer that is not a complete image (a connection cut short, an error page)."""


def point_key(lat: float, lon: float) -> str:
    return f"{lat:.7f},{lon:.7f}"  # as sent to the API


class StreetViewClient:
    """The API's metadata and image endpoints over one aiohttp session, with one key."""

    def __init__(
        self,
        session,
        key: str,
        base_url: str,
        rate_per_s: float | None,
        retries: int,
        backoff_s: float,
        timeout_s: float,
    ):
        import aiohttp

        self.aiohttp = aiohttp
        self.session, self.key, self.base_url = session, key, base_url
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        # One request per 1/rate seconds (no burst): aiolimiter's bucket holds one request.
        self.limiter: AsyncLimiter | contextlib.nullcontext = (
            AsyncLimiter(1, 1 / rate_per_s) if rate_per_s else contextlib.nullcontext()
        )

    async def get(self, endpoint: str, params: dict, what: str) -> bytes:
        """One API answer, retried on transient failures; a Stop when they do not pass."""
        aiohttp = self.aiohttp
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((_Transient, TimeoutError, aiohttp.ClientError)),
            stop=stop_after_attempt(self.retries + 1),
            # Exponential backoff plus random jitter, so that workers do not retry in step.
            wait=wait_exponential(multiplier=self.backoff_s, max=60 * self.backoff_s)
            + wait_random(0, self.backoff_s),
            reraise=True,
        )
        host = urlsplit(self.base_url).netloc
        after = f"after {self.retries} retries"
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._get_once(endpoint, params, what)
        except _HTTPStatus as exc:
            if exc.status == 429:
                raise Stop(
                    f"quota exhausted: {host} kept answering 429 Too Many Requests"
                ) from None
            raise Stop(
                f"{what} requests to {host} keep failing (HTTP {exc.status}) {after}"
            ) from None
        except _BadImage:
            raise Stop(f"image requests to {host} keep answering broken images {after}") from None
        except aiohttp.ClientConnectorError:
            raise Stop(f"network down: cannot connect to {host}") from None
        except TimeoutError:
            raise Stop(f"network down: no answer from {host} within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            name = exc.__class__.__name__  # never str(exc): it may carry the URL, and the key
            raise Stop(f"{what} requests to {host} keep failing ({name}) {after}") from None
        raise AssertionError("unreachable: tenacity either returns or reraises")

    async def _get_once(self, endpoint: str, params: dict, what: str) -> bytes:
        url = f"{self.base_url.rstrip('/')}/{endpoint}"
        # The limiter spaces request starts; its exit does nothing, so holding it costs nothing.
        params = {**params, "key": self.key}
        async with self.limiter, self.session.get(url, params=params) as response:
            if response.status == 429 or response.status >= 500:
                raise _HTTPStatus(response.status)
            if response.status == 403:
                raise Stop(f"the API refused a {what} request (HTTP 403): check the key and quota")
            if response.status != 200:
                raise Stop(f"the API answered HTTP {response.status} to a {what} request")
            data = await response.read()
        if what == "image" and check_image(data, deep=True):
            raise _BadImage()
        return data

    async def metadata(self, lat: float, lon: float, radius_m: int) -> dict:
        """The nearest panorama within `radius_m` of a point, as the metadata endpoint says."""
        params = {"location": point_key(lat, lon), "radius": str(radius_m)}
        data = await self.get("streetview/metadata", params, "metadata")
        try:
            meta = json.loads(data)
        except ValueError:
            raise Stop("the metadata endpoint answered something that is not JSON") from None
        if not isinstance(meta, dict):
            raise Stop("the metadata endpoint answered JSON that is not an object")
        status = meta.get("status")
        if status == "REQUEST_DENIED":
            raise Stop("the API rejected the key (REQUEST_DENIED)")
        if status == "OVER_QUERY_LIMIT":
            raise Stop("quota exhausted (OVER_QUERY_LIMIT)")
        return meta
