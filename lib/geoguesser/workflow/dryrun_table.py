"""The dry run's table: one row per check, its result, and the blocker it may raise."""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9


@dataclass
class Row:
    check: str
    result: str
    blocker: str | None = None  # one line, when this stops the run


def gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:.2f} GB"


def format_table(rows: list[Row]) -> str:
    width = max(len(row.check) for row in rows)
    lines = []
    for row in rows:
        mark = "BLOCKED  " if row.blocker else ""
        lines.append(f"  {row.check:<{width}}  {mark}{row.result}")
    return "\n".join(lines)


def blockers(rows: list[Row], prefix: str = "") -> list[str]:
    return [f"{prefix}{row.blocker}" for row in rows if row.blocker]
