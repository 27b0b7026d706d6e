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
    """Each notebook page shows its cell outputs; its figures and nbconvert's stylesheet are files
    beside it (vault/notebook_assets.py), every one of them there, and no figure is left as base64."""
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
        assert "data:image/png" not in html and "<style" not in html, f"{uri}: inline figure or style left"
        sheets = re.findall(r'<link rel="stylesheet" href="([^"]*notebook-[0-9a-f]{16}\.css)">', html)
        assert len(sheets) == 1 and (page.parent / sheets[0]).resolve().is_file(), sheets
