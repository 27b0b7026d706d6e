"""The build's shortcuts change its speed, not its output.

- The memoised navigation (vault/navcache.py) draws exactly what Material draws page by page.
- The search parser, shown code blocks as plain text (vault/search.py), writes the same index.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config

import vault.plugin
from vault.navcache import memoised_nav_item
from vault.search import plain_code_blocks
from vault.synthetic import make_vault

ROOT = Path(__file__).resolve().parent.parent


def drawn_by_material(render, nav_item, path, level, parent=None):
    return render(nav_item, path, level) if parent is None else render(nav_item, path, level, parent)


def build_pages(project: Path, site: Path) -> dict[str, bytes]:
    build(load_config(str(project / "mkdocs.yml"), site_dir=str(site)))
    return {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*.html"))}


@pytest.mark.parametrize("group_size", [4, 40], ids=["grouped", "ungrouped"])
@pytest.mark.parametrize("offline", [False, True], ids=["site", "offline"])
def test_memoised_navigation_matches_material_page_by_page(tmp_path, monkeypatch, offline, group_size):
    if offline:  # the offline copy uses .html URLs, so links are relative to a different folder
        monkeypatch.setenv("OFFLINE", "true")
    # 6 notes a section: in groups of 4 and 2, or (as on the real site) beside the section's index page
    monkeypatch.setattr(vault.plugin, "NAV_GROUP_SIZE", group_size)
    project = make_vault(tmp_path / "vault", 60, ROOT)

    hits, made = [], []

    def counting():
        memoised = memoised_nav_item()
        made.append(memoised)

        def render_item(context, render, *args):
            drawn = []
            result = memoised(context, lambda *a: drawn.append(a) or render(*a), *args)
            hits.append(not drawn)
            return result
        render_item.jinja_pass_arg = memoised.jinja_pass_arg
        return render_item

    monkeypatch.setattr(vault.plugin, "memoised_nav_item", counting)
    memoised = build_pages(project, tmp_path / "memoised")

    monkeypatch.setattr(vault.plugin, "memoised_nav_item", lambda: drawn_by_material)
    plain = build_pages(project, tmp_path / "plain")

    assert sum(hits) > len(memoised) * 5, "the cache should serve most top-level sections"
    # All but the first page drawn in each group (or section) reuse their section.
    assert sum(m.reused["current section"] for m in made) >= 35
    assert memoised.keys() == plain.keys() and len(plain) > 60
    differing = [name for name in plain if memoised[name] != plain[name]]
    assert not differing, f"navigation differs on {len(differing)} pages, e.g. {differing[:3]}"


def test_search_index_is_the_same_when_code_is_shown_to_the_parser_as_plain_text(project, tmp_path, monkeypatch):
    saved = []

    def plain_and_measured(html):
        plain = plain_code_blocks(html)
        saved.append(len(html) - len(plain))
        return plain

    monkeypatch.setattr(vault.plugin, "plain_code_blocks", plain_and_measured)
    build(load_config(str(project / "mkdocs.yml"), site_dir=str(tmp_path / "plain")))
    monkeypatch.setattr(vault.plugin, "plain_code_blocks", lambda html: html)
    build(load_config(str(project / "mkdocs.yml"), site_dir=str(tmp_path / "highlighted")))

    assert sum(saved) > 1_000_000, "the parser should be spared the highlighting markup"
    index = "search/kb_index.js"
    assert (tmp_path / "plain" / index).read_bytes() == (tmp_path / "highlighted" / index).read_bytes()
