"""The downloader's journal: the fsynced record of finished points that data.csv is built from.

Every finished point is appended and fsynced, so an interrupted download resumes where it
stopped; `data.csv` lists only the journal's locations whose four views are in `images/`,
so a row never exists without its images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from geoguesser.atomic import write_text
from geoguesser.data.layout import VIEWS

CSV_COLUMNS = [
    "uuid",
    "latitude",
    "longitude",
    "pano_id",
    "sample_latitude",
    "sample_longitude",
    "date",
    "point",
]


class Journal:
    """Append-only, fsynced record of finished points; a torn last line (a kill) is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: list[dict] = []
        if path.exists():
            lines = path.read_text().splitlines()
            for line in lines:
                try:
                    self.entries.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # only the last line can be torn
            if len(self.entries) < len(lines):  # drop the torn line, atomically: never lose all
                write_text(path, "".join(json.dumps(e) + "\n" for e in self.entries))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a")  # noqa: SIM115 - kept open for the whole download

    def append(self, entry: dict) -> None:
        self.entries.append(entry)
        self.handle.write(json.dumps(entry) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()

    def locations(self, images: Path) -> pd.DataFrame:
        """The finished locations whose four views are in `images`: what data.csv may list."""
        rows = [
            e
            for e in self.entries
            if e["status"] == "ok"
            and all((images / e["uuid"] / f"{h}.jpg").is_file() for h in VIEWS)
        ]
        return pd.DataFrame(rows, columns=["status", *CSV_COLUMNS])[CSV_COLUMNS]
