"""The checkpoints a server may use, by name, each loaded once on its first request.

A checkpoint that cannot load is unusable with its one-line reason until a restart: listed
so in GET /models, and a request for it is answered 503 in one sentence.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from geoguesser.errors import UserError
from geoguesser.serve.bad_request import BadRequest, printable
from geoguesser.serve.limits import MAX_VIEWS


def load_reason(error: Exception, path: Path) -> str:
    """Why `path` did not load, in one line and without the path (the caller names it)."""
    if isinstance(error, UserError):
        text = str(error).strip().splitlines()[0] if str(error).strip() else "cannot be loaded"
        return text.removeprefix(f"{path}: ")
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"cannot be loaded ({type(error).__name__}{': ' + first[:200] if first else ''})"


class ModelStore:
    """The checkpoints a server may use, by name, each loaded on its first request.

    `checkpoint` is served by default (its file name is its name); every `*.ckpt` under
    `checkpoint_dir` is served by its path relative to that folder. One that is not a file,
    or fails to load, is `unusable` with its reason from then on (until a restart): it is
    listed so in GET /models, and a request for it is answered 503 in one sentence.
    """

    def __init__(self, checkpoint: Path | None = None, checkpoint_dir: Path | None = None):
        self.paths: dict[str, Path] = {}
        self.unusable: dict[str, str] = {}
        if checkpoint is not None:
            if not checkpoint.exists():
                raise UserError(f"{checkpoint}: checkpoint not found")
            if not checkpoint.is_file():
                raise UserError(f"{checkpoint}: not a regular file (a checkpoint is one file)")
        if checkpoint_dir is not None:
            if not checkpoint_dir.is_dir():
                raise UserError(f"{checkpoint_dir}: --checkpoint-dir is not a folder")
            for path in sorted(checkpoint_dir.rglob("*.ckpt")):
                name = path.relative_to(checkpoint_dir).as_posix()
                self.paths[name] = path
                if not path.is_file():
                    self.unusable[name] = "not a regular file"
            if not self.paths and checkpoint is None:
                raise UserError(f"{checkpoint_dir}: no .ckpt file in this folder")
        self.default = None
        self.chosen = checkpoint is not None  # the default was named, not picked
        if checkpoint is not None:
            inside = {path.resolve(): name for name, path in self.paths.items()}
            self.default = inside.get(checkpoint.resolve(), checkpoint.name)
            self.paths.setdefault(self.default, checkpoint)
        if self.default is None:
            self.default = next(iter(self.paths))
        self.loaded: dict = {}
        self.lock = threading.Lock()  # one load at a time: requests arrive on many threads
        self.announce = False  # once serving, each model found unusable is one log line

    def say_unusable(self, name: str) -> None:
        print(f"geoguesser serve: model {name} is unusable: {self.unusable[name]}", file=sys.stderr)

    def names(self) -> list[str]:
        return list(self.paths)

    def get(self, name: str | None):
        """The loaded GeoLocator called `name` (None: the default); BadRequest if not servable.

        Loads on a worker thread's time: call it through the thread pool, not on the loop.
        """
        from geoguesser.model.checkpoint import load_checkpoint

        name = name or self.default
        if name not in self.paths:
            known = ", ".join(printable(n) for n in self.paths)
            raise BadRequest(
                f"unknown model {printable(name)!r}; GET /models lists them ({known})", 404
            )
        with self.lock:
            if name not in self.loaded and name not in self.unusable:
                try:
                    self.loaded[name] = load_checkpoint(self.paths[name])
                except Exception as error:  # noqa: BLE001 -- any failure makes it unusable
                    self.unusable[name] = load_reason(error, self.paths[name])
                    if self.announce:
                        self.say_unusable(name)
        if name in self.unusable:
            raise BadRequest(f"model {name!r} cannot be used: {self.unusable[name]}", 503)
        return self.loaded[name]

    def load_default(self) -> None:
        """Load the default model now: UserError (one line) if it cannot be used.

        A named --checkpoint must load; with a folder only, the first one that loads is the
        default, and the others' failures are listed as unusable.
        """
        candidates = [self.default] if self.chosen else self.names()
        for name in candidates:
            try:
                self.get(name)
            except BadRequest:
                continue
            for skipped in candidates[: candidates.index(name)]:
                self.say_unusable(skipped)
            self.default = name
            return
        first = candidates[0]
        where = self.paths[first] if self.chosen else self.paths[first].parent
        if self.chosen:
            raise UserError(f"{where}: {self.unusable[first]}")
        raise UserError(f"no checkpoint here loads; the first, {first}: {self.unusable[first]}")


def views_problem(model, n_views: int) -> str | None:
    """Why `model` cannot place `n_views` views, or None."""
    if model.settings.fusion == "concat" and n_views != MAX_VIEWS:
        return (
            f"this model joins the views by concatenation and needs all four (N, E, S, W); "
            f"got {n_views}"
        )
    return None
