"""Every notebook under docs/ executes from top to bottom without an error, within its time limit."""
from __future__ import annotations

from pathlib import Path

import pytest

from vault.notebooks import ROOT, execute, notebook_files


@pytest.mark.parametrize("path", notebook_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_executes(path: Path):
    nb = execute(path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_notebooks_render_on_the_site_with_their_outputs(site):
    """Each notebook page shows its cell outputs; its figures are files beside it, every one of them
    there, no figure is left as base64, and its styles are one pruned block (vault/notebook_assets.py)."""
    import re

    from vault.urls import clean_dest_uri
    _, root = site
    for path in notebook_files():
        uri = path.relative_to(ROOT / "docs").as_posix()
        page = root / clean_dest_uri(uri)
        html = page.read_text(encoding="utf-8")
        assert "jp-OutputArea-output" in html, f"{uri}: no cell output on the page"
        figures = re.findall(r'<img\b[^>]*\ssrc="(output-[0-9a-f]{16}\.png)"[^>]*\sloading="lazy"', html)
        assert figures and all((page.parent / f).is_file() for f in figures), f"{uri}: figures {figures}"
        assert "data:image/png" not in html, f"{uri}: a figure left inline"
        styles = re.findall(r"<style\b[^>]*>(.*?)</style>", html, re.S)
        assert len(styles) == 1 and 10_000 < len(styles[0]) < 300_000, [len(x) for x in styles]


def test_a_notebook_keeps_the_style_rules_its_classes_can_match():
    from vault.notebook_assets import used_rules
    css = """:root { --x: 1 } .jp-Cell { a: 1 } .jp-Widget, .jp-Cell > .jp-Out { b: 2 } .jp-Widget { c: 3 }
             .jp-Cell:not(.jp-Hidden) { d: 4 } :is(.jp-Widget, .jp-Cell) { e: 5 } a[href$=".css"] { f: 6 }
             .md-typeset__scrollwrap .jp-Cell { g: 7 }
             @media (max-width: 10px) { .jp-Widget { h: 8 } .jp-Cell { i: 9 } }
             @font-face { font-family: F }"""
    kept = used_rules(css, {"jp-Cell", "jp-Out"})
    for kept_value in ("--x: 1", "a: 1", "b: 2", "d: 4", "e: 5", "f: 6", "g: 7", "i: 9", "font-family: F"):
        assert kept_value in kept, kept_value
    for dropped in ("c: 3", "h: 8"):
        assert dropped not in kept, dropped
