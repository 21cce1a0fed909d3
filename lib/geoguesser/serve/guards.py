"""Whom the server answers: its own `Host` names and page, or what the user allowed.

Only requests addressed to this server (its `Host`) and from its own page (or an allowed
`Origin`) are answered, so a page on another site, or one that rebinds its DNS name to this
machine, cannot use the server; a client that hangs up leaves nothing in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from geoguesser.errors import UserError
from geoguesser.serve.limits import LOCAL_NAMES


def authority(value: str, default_port: int) -> tuple[str, int] | None:
    """A `Host` header or a URL's host[:port] as (lowercase name, port); None if malformed."""
    if not re.fullmatch(r"[A-Za-z0-9.\-_:\[\]]+", value):
        return None
    try:
        parts = urllib.parse.urlsplit("//" + value)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path:
        return None
    return parts.hostname, default_port if port is None else port


def origin_of(value: str) -> tuple[str, str, int] | None:
    """An `Origin` (scheme://host[:port]) as (scheme, name, port); None if not one."""
    scheme, _, rest = value.partition("://")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        return None
    where = authority(rest, 80 if scheme == "http" else 443)
    return None if where is None else (scheme, *where)


def origin_text(origin: tuple[str, str, int]) -> str:
    """(scheme, name, port) as a browser writes it in `Origin`: default ports left out."""
    scheme, name, port = origin
    host = f"[{name}]" if ":" in name else name
    default = 80 if scheme == "http" else 443
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class Trust:
    """Whom the server answers: the `Host` names it accepts, the foreign origins it allows."""

    hosts: frozenset[tuple[str, int]]
    origins: frozenset[tuple[str, str, int]] = frozenset()

    @classmethod
    def of(cls, host: str, port: int, allow_hosts=(), allow_origins=()) -> Trust:
        """The bound address and the local names at `port`, plus what the user allowed.

        UserError for an --allow-host or --allow-origin that is not a host or an origin.
        """
        hosts = {(name.lower().strip("[]"), port) for name in (host, *LOCAL_NAMES)}
        for value in allow_hosts:
            where = authority(value, port)
            if where is None:
                raise UserError(f"--allow-host {value!r}: not a host name or address[:port]")
            hosts.add(where)
        origins = set()
        for value in allow_origins:
            origin = origin_of(value.rstrip("/"))
            if origin is None:
                raise UserError(
                    f"--allow-origin {value!r}: not an origin (http(s)://host[:port], no path)"
                )
            origins.add(origin)
        return cls(frozenset(hosts), frozenset(origins))

    def refusal(self, method: str, headers: Headers) -> tuple[int, str] | None:
        """(status, sentence) if this request is not one the server answers, else None."""
        host = authority(headers.get("host", ""), 80)
        if host not in self.hosts:
            return 400, (
                "this server does not answer for that Host; start it with --allow-host NAME "
                "to be reached under another name"
            )
        origin = headers.get("origin")
        if origin is None or method in ("GET", "HEAD", "OPTIONS"):
            return None
        parsed = origin_of(origin)
        if parsed == ("http", *host) or parsed in self.origins:
            return None
        return 403, (
            "requests from another site's page are refused; start the server with "
            "--allow-origin ORIGIN to accept that site"
        )


class Guard:
    """ASGI middleware: refuses what `Trust` does not answer, and keeps client hang-ups quiet.

    A client that disconnects mid-upload raises ClientDisconnect inside the app (and a task
    cancelled at shutdown raises CancelledError): nobody is left to answer, so neither is an
    error or a traceback in the log.
    """

    def __init__(self, app, trust: Trust):
        self.app, self.trust = app, trust

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.trust.refusal(scope["method"], Headers(scope=scope))
        if refusal is not None:
            status, sentence = refusal
            return await JSONResponse({"detail": sentence}, status)(scope, receive, send)
        with contextlib.suppress(ClientDisconnect, asyncio.CancelledError):
            await self.app(scope, receive, send)
