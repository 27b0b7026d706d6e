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
    _, root = site
    from vault.urls import clean_dest_uri
    for path in notebook_files():
        uri = path.relative_to(ROOT / "docs").as_posix()
        html = (root / clean_dest_uri(uri)).read_text(encoding="utf-8")
        assert html.count("data:image/png;base64") >= 1, f"{uri}: no figure output on the page"
        assert "jp-OutputArea-output" in html, f"{uri}: no cell output on the page"
