"""Every snippet runs on its own, on the CPU, within its time limit; its assertions and claims are the
claims its page makes. Every claim in its code runs, and every figure it makes is the one the site shows."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from vault.claims import inclusions, read_proof
from vault.snippets import FIGURE_SOURCES as SOURCES
from vault.snippets import INEXACT_SUFFIX, ROOT, SNIPPETS, changed_pixels, run, snippet_files
from vault.vault import Vault

FIGURES = ROOT / "docs" / "assets" / "figures"
MAX_CHANGED_PIXELS = 10


@cache
def pages_showing() -> dict[str, list[str]]:
    """snippets-relative file -> the pages that include a part of it."""
    vault = Vault.load(ROOT / "docs", label="docs")
    shown: dict[str, list[str]] = {}
    for src in vault.notes.values():
        for inc in inclusions(src.body, src.path, src.body_line_of):
            if src.path not in shown.setdefault(inc.file, []):
                shown[inc.file].append(src.path)
    return shown


def snippet_failure(path: Path, snippets: Path, tmp_path: Path) -> str | None:
    """Why the snippet at `path` (under `snippets/`) does not prove its page, naming the page; None if it does."""
    name = path.relative_to(snippets).as_posix()
    rel = f"snippets/{name}"
    pages = ", ".join(pages_showing().get(name, [])) or "no page"
    tmp_path.mkdir(parents=True, exist_ok=True)
    log, figures = tmp_path / "claims.jsonl", tmp_path / "figures"
    proc = run(path, figure_dir=figures, claims_log=log)
    if proc.returncode != 0:
        return f"{rel} (shown on {pages}) failed:\n{proc.stderr[-4000:]}"

    ran = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    ran_lines = {r["line"] for r in ran if Path(r["file"]).resolve() == path.resolve()}
    never_ran = [c for c in read_proof(path.read_text(encoding="utf-8")).claims if c.line not in ran_lines]
    if never_ran:
        return f"{rel} (shown on {pages}): claims that never ran, so bind nothing: " + \
            ", ".join(f"line {c.line} '{c.text}'" for c in never_ran)

    for made in sorted(figures.rglob("*.png")):
        key = made.relative_to(figures).as_posix()
        committed = FIGURES / key
        if not committed.is_file():
            return f"{rel} makes {made.name}, but {committed.relative_to(ROOT)} is not committed (run make figures)"
        marker = made.with_suffix(INEXACT_SUFFIX)
        if marker.is_file():  # drawn from a training run: the code that drew it must be the code here
            sources = json.loads(SOURCES.read_text(encoding="utf-8")) if SOURCES.is_file() else {}
            if sources.get(key) != marker.read_text(encoding="utf-8"):
                return f"{rel} has changed since {committed.relative_to(ROOT)} was made (shown on {pages}); " \
                       "run make figures"
            continue
        changed = changed_pixels(made, committed)
        if changed is None or changed > MAX_CHANGED_PIXELS:
            return f"{rel} makes a figure that differs from {committed.relative_to(ROOT)} (shown on {pages}): " + \
                ("a different size" if changed is None else f"{changed} pixels changed") + "; run make figures"
    return None


@pytest.mark.parametrize("path", snippet_files(), ids=lambda p: p.relative_to(SNIPPETS).as_posix())
def test_snippet_runs_and_its_claims_hold(path: Path, tmp_path: Path):
    failure = snippet_failure(path, SNIPPETS, tmp_path)
    assert failure is None, failure


def test_there_are_snippets():
    assert len(snippet_files()) >= 1


def copy_of(snippet: str, tmp_path: Path, edit) -> tuple[Path, Path]:
    """The snippets tree copied under tmp_path, with `edit(source)` applied to one snippet."""
    import shutil
    tree = tmp_path / "snippets"
    shutil.copytree(SNIPPETS, tree, ignore=shutil.ignore_patterns("__pycache__"))
    path = tree / snippet
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path, tree


def test_a_figure_that_no_longer_matches_its_code_fails_naming_the_snippet(tmp_path: Path):
    # An exact figure, compared pixel by pixel: one digit of its title is now another.
    path, tree = copy_of("classical-cv/ransac.py", tmp_path,
                         lambda s: s.replace("with 60% outliers", "with 50% outliers"))
    failure = snippet_failure(path, tree, tmp_path / "exact")
    assert failure and failure.startswith("snippets/classical-cv/ransac.py makes a figure that differs from "
                                          "docs/assets/figures/classical-cv/ransac-line.png"), failure
    assert "RANSAC.md" in failure and "pixels changed" in failure


def test_an_inexact_figure_fails_when_its_code_changed_since_it_was_made(tmp_path: Path):
    # A figure drawn from training is not compared pixel by pixel: the code that drew it must be unchanged.
    snippet = "notes/identity_mappings.py"
    assert "exact=False" in (SNIPPETS / snippet).read_text(encoding="utf-8")
    unchanged, tree = copy_of(snippet, tmp_path / "same", lambda s: s)
    assert snippet_failure(unchanged, tree, tmp_path / "same" / "out") is None
    edited, tree = copy_of(snippet, tmp_path / "edited",
                           lambda s: s.replace("torch.manual_seed(0)", "torch.manual_seed(1)", 1))
    failure = snippet_failure(edited, tree, tmp_path / "edited" / "out")
    assert failure and failure.startswith(f"snippets/{snippet} has changed since "
                                          "docs/assets/figures/notes/identity-mappings-gradients.png was made"), failure
