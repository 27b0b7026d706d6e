"""Every snippet runs on its own, on the CPU, within its time limit; its assertions are the claims
its page makes. Figures are re-made, and every figure a snippet makes is the one the site shows."""
from __future__ import annotations

from pathlib import Path

import pytest

from vault.snippets import ROOT, SNIPPETS, run, snippet_files

FIGURES = ROOT / "docs" / "assets" / "figures"


@pytest.mark.parametrize("path", snippet_files(), ids=lambda p: p.relative_to(SNIPPETS).as_posix())
def test_snippet_runs_and_its_assertions_hold(path: Path, tmp_path: Path):
    proc = run(path, figure_dir=tmp_path)
    assert proc.returncode == 0, f"{path.relative_to(ROOT)} failed:\n{proc.stderr[-4000:]}"
    for made in sorted(tmp_path.rglob("*.png")):
        committed = FIGURES / made.relative_to(tmp_path)
        assert committed.is_file(), f"{path.name} makes {made.name}, but {committed.relative_to(ROOT)} " \
                                    "is not committed (run make figures)"


def test_there_are_snippets():
    assert len(snippet_files()) >= 1
