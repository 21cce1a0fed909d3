"""The documentation site builds with `mkdocs build --strict`, and the README leads into it.

--strict with mkdocs.yml's `validation` turns a broken link or anchor and a page left out of
the nav into a failed build; the build goes to a temporary folder, never into the checkout.
The README stays the front door: short, with the two commands and a link to every page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from geoguesser.config import schema_markdown
from helpers.paths import REPO

DOCS = REPO / "docs"
README = REPO / "README.md"


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's notice, not a warning of ours
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site)], capture_output=True, text=True, env=env
    )


def nav_pages(config: dict) -> list[str]:
    return [page for entry in config["nav"] for page in entry.values()]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    built = mkdocs_build(REPO / "mkdocs.yml", site)
    assert built.returncode == 0, built.stderr
    return site


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def test_every_page_is_in_the_nav_and_built(site, config):
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav_pages(config)) == pages
    for page in pages:
        html = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        assert (site / html).is_file(), html


def test_the_settings_page_holds_every_setting_of_the_schema(site):
    html = (site / "settings" / "index.html").read_text()
    keys = re.findall(r"^\| `(\w+)` \|", schema_markdown(), re.M)
    assert len(keys) > 40
    missing = [key for key in keys if f"<code>{key}</code>" not in html]
    assert not missing, missing


def test_the_site_shows_the_figures_without_a_copy_in_docs(site):
    shown = set(re.findall(r"\]\(figures/([\w.-]+\.png)\)", README.read_text()))
    for page in DOCS.rglob("*.md"):
        shown |= set(re.findall(r"\]\(\.\./figures/([\w.-]+\.png)\)", page.read_text()))
    assert shown and all((site / "figures" / name).is_file() for name in shown)
    tracked = subprocess.run(
        ["git", "ls-files", "docs"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [path for path in tracked if not path.endswith((".md", ".py"))], tracked


def test_the_readme_is_a_short_front_door_to_every_page(config):
    readme = README.read_text()
    assert len(readme.splitlines()) <= 200
    assert "make demo" in readme and "make test" in readme and "make docs" in readme
    linked = re.findall(r"\]\(docs/([\w/-]+\.md)(?:#[\w-]+)?\)", readme)
    assert all((DOCS / page).is_file() for page in linked), linked
    assert set(linked) == set(nav_pages(config))


def test_a_broken_link_fails_the_strict_build(tmp_path, config):
    """The check above is only as good as its failure: a link to a missing anchor stops it."""
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / "figures").symlink_to(REPO / "figures")
    page = tmp_path / "docs" / "development.md"
    page.write_text(page.read_text() + "\nSee [nowhere](runs.md#no-such-section).\n")
    config = {**config, "hooks": [str(tmp_path / "docs" / "hooks.py")]}
    config.pop("watch", None)
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    built = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0
    assert "does not contain an anchor '#no-such-section'" in built.stderr, built.stderr
