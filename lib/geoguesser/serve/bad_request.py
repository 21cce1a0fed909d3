"""A client's mistake as the server answers it: a status and one sentence, names made printable."""

from __future__ import annotations


class BadRequest(Exception):
    """A client's mistake: answered with `status` and this one sentence."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def printable(name: str, limit: int = 100) -> str:
    """A client-given name fit for a one-line answer: control characters as ?, cut short."""
    return "".join(c if c.isprintable() else "?" for c in name[:limit])
