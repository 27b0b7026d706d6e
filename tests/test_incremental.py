"""`make serve` rebuilds incrementally (vault/incremental.py) and shows build errors (vault/serve.py).

An incremental rebuild must write what a full build writes, and warn as a full build warns: the
test applies a contributor's edits one by one and compares every file of the two sites.
"""
from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.exceptions import Abort

from vault import incremental

from .conftest import add_note, small_vault, write
from .test_new_and_serve import free_port

SNIPPET = "demo/answer.py"


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def build_site(project: Path, site: Path) -> list[str]:
    """Build as `make serve` does (a new configuration each time); the warnings it logged."""
    warnings = Warnings()
    logging.getLogger("mkdocs").addHandler(warnings)
    config = load_config(str(project / "mkdocs.yml"), site_dir=str(site), strict=True)
    config.plugins.on_startup(command="serve", dirty=False)  # the plugins behave as under `make serve`
    try:
        build(config)
    except Abort:
        pass  # a strict build with warnings: the site is written, the warnings say why it failed
    finally:
        logging.getLogger("mkdocs").removeHandler(warnings)
    return sorted(m for m in warnings.messages if not m.startswith("Aborted with"))


def contents(site: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        data = path.read_bytes()
        files[path.relative_to(site).as_posix()] = gzip.decompress(data) if path.suffix == ".gz" else data
    return files


def note(project: Path, i: int) -> Path:
    return next((project / "docs").rglob(f"Synthetic note {i:05d}.md"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def served_project(tmp_path, monkeypatch):
    project = small_vault(tmp_path / "vault")
    write(project / "snippets" / SNIPPET, "def answer():\n    return 41\n")
    edit(note(project, 2), "## Pitfalls", f'```python\n--8<-- "{SNIPPET}"\n```\n\n## Pitfalls')
    monkeypatch.chdir(project)  # pymdownx.snippets finds snippets/ from the working directory
    incremental.install()
    yield project
    incremental.uninstall()
    # MkDocs keeps plugin instances for the process: leave them as a `mkdocs build` would have them.
    load_config(str(project / "mkdocs.yml")).plugins.on_startup(command="build", dirty=False)


EDITS = [
    ("change text", lambda p: edit(note(p, 1), "A short answer", "A revised short answer")),
    ("change a title (the navigation of every page)",
     lambda p: edit(note(p, 1), "# Synthetic question number 1,", "# Retitled question number 1,")),
    ("add a wikilink", lambda p: edit(note(p, 3), "Another trap.", "Another trap; see [[Synthetic note 00004]].")),
    ("link to a heading", lambda p: edit(note(p, 0), "Another trap.", "See [[Synthetic note 00005#Mechanism]].")),
    # The linking note is unchanged: only the target's headings say its render is stale.
    ("rename a heading that another page links to", lambda p: edit(note(p, 5), "Mechanism", "How it works")),
    ("add a page",
     lambda p: add_note(p, "section-00/Added page.md", "# Added page\n\nLinks to [[Synthetic note 00001]].\n")),
    ("delete a page", lambda p: [note(p, 4).unlink(), edit(note(p, 3), "[[Synthetic note 00004]]", "note four")]),
    ("edit a snippet", lambda p: write(p / "snippets" / SNIPPET, "def answer():\n    return 42\n")),
    ("add a file to the theme's overrides", lambda p: write(p / "overrides" / "assets" / "added.txt", "new\n")),
]

# Edits that change one page's HTML (and the handout, which prints every answer).
ONE_PAGE_EDITS = {"change text": "section-01/synthetic-note-00001/index.html",
                  "edit a snippet": "section-02/synthetic-note-00002/index.html"}


def test_incremental_rebuilds_write_what_a_full_build_writes(served_project, tmp_path):
    project = served_project
    build_site(project, tmp_path / "served")  # the first build under serve
    for name, apply in EDITS:
        apply(project)
        before = dict(incremental.stats)
        mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "served").rglob("*") if p.is_file()}
        served_warnings = build_site(project, tmp_path / "served")
        rewritten = sorted(p.relative_to(tmp_path / "served").as_posix() for p, t in mtimes.items()
                           if p.exists() and p.stat().st_mtime_ns != t)
        if name in ONE_PAGE_EDITS:  # the site directory is not rewritten wholesale
            pages = [r for r in rewritten if r.endswith(".html")]
            assert pages and set(pages) <= {ONE_PAGE_EDITS[name], "handout/index.html"}, (name, pages)
            assert not any(r.startswith("assets/") for r in rewritten), (name, rewritten)
        reused = incremental.stats["hits"] - before["hits"]
        with incremental.fresh():
            full_warnings = build_site(project, tmp_path / f"full-{name}")
        served, full = contents(tmp_path / "served"), contents(tmp_path / f"full-{name}")
        assert served.keys() == full.keys(), name
        differing = [f for f in served if served[f] != full[f]]
        assert not differing, (name, differing)
        assert served_warnings == full_warnings, name
        if name == "rename a heading that another page links to":
            assert any("Synthetic note 00000.md" in w and "#Mechanism" in w for w in served_warnings), served_warnings
        elif name not in ("add a page", "delete a page", "add a file to the theme's overrides"):  # new file sets
            assert reused > 0, f"{name}: the rebuild reused no page"  # else the test proves nothing
    assert (tmp_path / "served" / "assets" / "added.txt").is_file()
    page = (tmp_path / "served" / "section-02").rglob("index.html")
    assert any("42" in p.read_text() and "answer" in p.read_text() for p in page)


def test_a_snippet_edit_re_renders_only_the_pages_that_include_it(served_project, tmp_path):
    build_site(served_project, tmp_path / "site")
    before = dict(incremental.stats)
    write(served_project / "snippets" / SNIPPET, "def answer():\n    return 43\n")
    build_site(served_project, tmp_path / "site")
    assert incremental.stats["misses"] - before["misses"] == 1


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        return e.read().decode()
    except OSError:
        return ""


def wait_for(predicate, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_reports_a_broken_link_in_the_terminal_and_on_the_page_until_it_is_fixed(tmp_path):
    project = small_vault(tmp_path / "vault")
    port = free_port()
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vault.serve", "-a", f"127.0.0.1:{port}"], cwd=project,
                                env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/cv-interview-kb/section-01/"
    try:
        wait_for(lambda: "Section 1" in get(url), "the first build")
        assert "kb-build-errors" not in get(url)
        page = note(project, 1)
        good = page.read_text(encoding="utf-8")
        lines = good.count("\n")
        page.write_text(good + "See [[No such note]].\n", encoding="utf-8")
        where = f"docs/section-01/Synthetic note 00001.md:{lines + 1}: wikilink [[No such note]] matches no note"
        body = wait_for(lambda: next((b for b in [get(url)] if "kb-build-errors" in b), ""), "the banner")
        assert where in body  # every page says what is wrong, and where
        wait_for(lambda: where in log_file.read_text(), "the terminal to name path:line")
        page.write_text(good, encoding="utf-8")
        wait_for(lambda: "kb-build-errors" not in get(url) and "Section 1" in get(url), "the banner to clear")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
