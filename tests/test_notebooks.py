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
