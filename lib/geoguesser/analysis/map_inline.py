"""A saved error map inside JupyterLab: a copy with its view sheets inside, shown in an iframe.

Jupyter serves files sandboxed and a sandboxed page's requests carry no login, so a map
opened through JupyterLab cannot fetch the `views/` beside it; these copies fetch nothing.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from geoguesser.analysis.map_boxes import script_json
from geoguesser.atomic import atomic_path

INLINE_VIEW_BYTES = 4_000_000  # JPEG an inline copy carries: ~1,800 locations, worst first
_SHEET_REF = re.compile(r'\["(views/sheet-\d{4}\.jpg)",(\d+)\]')


def _embedded_sheets(folder: Path, references: list[str], budget: int) -> dict[str, str]:
    """reference -> data: URI for the sheets, in order, while they fit in `budget` bytes."""
    uris, used = {}, 0
    for reference in references:
        sheet = folder / reference
        if not sheet.is_file() or used + sheet.stat().st_size > budget:
            break
        used += sheet.stat().st_size
        uris[reference] = "data:image/jpeg;base64," + base64.b64encode(sheet.read_bytes()).decode()
    return uris


def inline_copy(path: str | Path, budget: int = INLINE_VIEW_BYTES) -> Path:
    """`errors-inline.html` beside `errors.html`: the same page with its view sheets inside.

    Jupyter serves files sandboxed, and a sandboxed page's requests carry no login: a map
    opened through JupyterLab (inline, in its HTML viewer, in a new tab, behind JupyterHub's
    base URL) cannot fetch `views/`. This copy fetches nothing: each sheet is in it once,
    as a data: URI the popups look up. The sheets hold the worst locations first; past
    `budget` bytes the others stay out and their popups say so. errors.html keeps its
    sheets beside it (small, every view).
    """
    path = Path(path)
    page = path.read_text()
    references = sorted({match.group(1) for match in _SHEET_REF.finditer(page)})
    uris = _embedded_sheets(path.parent, references, budget)

    def keep_or_drop(match: re.Match) -> str:
        return match.group(0) if match.group(1) in uris else "0"

    page = _SHEET_REF.sub(keep_or_drop, page)
    sheets = f"<script>window.geoguesserSheets = {script_json(uris)};</script>"
    page = page.replace("<head>", "<head>\n" + sheets, 1) if "<head>" in page else sheets + page
    out = path.with_name(f"{path.stem}-inline{path.suffix}")
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return out


def notebook_view(path: str | Path, height: int = 560):
    """A saved map shown inside a notebook, views and all, however JupyterLab is reached.

    The page travels in the output itself (an iframe's `srcdoc`), views included
    (`inline_copy`), so nothing is fetched from Jupyter's file server: no login, no base
    URL, no sandbox in the way. It is not sandboxed, as folium's own notebook maps are not:
    it is this program's page, every text in it escaped.
    """
    from IPython.display import HTML

    page = inline_copy(path).read_text()
    return HTML(
        f'<div><iframe srcdoc="{html.escape(page, quote=True)}"'
        f' title="{html.escape(Path(path).name)}"'
        f' style="width:100%;height:{int(height)}px;border:0"></iframe></div>'
    )
