"""MkDocs hooks: the settings and tuning pages filled from their schemas; figures served as is.

Both keep one copy of a thing in the tree. The settings tables are generated from
`geoguesser.config.schema_markdown()` at build time, so the page cannot go stale and no test has
to compare a copy. The PNGs stay in the checkout's `figures/`, where the README shows them too:
the site adds them as files of its own instead of duplicating them under docs/, and pages link
them as `../figures/NAME.png`, a path that also resolves when a page is read in the repository.
"""

from __future__ import annotations

from pathlib import Path

SETTINGS_MARKER = "<!-- settings: the schema's tables, put here by docs/hooks.py -->"
SPACE_MARKER = "<!-- space: the space file's tables, put here by docs/hooks.py -->"
FIGURES = "figures"  # the checkout's folder of figures, beside mkdocs.yml


def with_schema(markdown: str) -> str:
    """The page with the settings marker replaced by the schema's tables (as is without one),
    and the space marker by the space file's (geoguesser.workflow.space, what tune accepts)."""
    if SETTINGS_MARKER in markdown:
        from geoguesser.config import schema_markdown  # only these pages need the package

        markdown = markdown.replace(SETTINGS_MARKER, schema_markdown().strip())
    if SPACE_MARKER in markdown:
        from geoguesser.workflow.space import space_markdown

        markdown = markdown.replace(SPACE_MARKER, space_markdown().strip())
    return markdown


def figure_links(markdown: str, src_uri: str) -> str:
    """Links to the checkout's figures/ (one above docs/) made links to the site's figures/."""
    up = "../" * src_uri.count("/")  # from the page's folder up to docs/
    return markdown.replace(f"]({up}../{FIGURES}/", f"]({up}{FIGURES}/")


def on_files(files, config):
    """Every figures/*.png of the checkout, added to the site under figures/."""
    from mkdocs.structure.files import File

    root = Path(config.config_file_path).parent
    for png in sorted((root / FIGURES).glob("*.png")):
        files.append(File.generated(config, f"{FIGURES}/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    return with_schema(figure_links(markdown, page.file.src_uri))
