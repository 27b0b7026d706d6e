from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from .browser import CHROMIUM, CHROMIUM_ARGS, Server, build_site

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A throw-away copy of the vault, its snippets and the site configuration, to break on purpose."""
    for name in ("docs", "snippets", "overrides"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    return tmp_path


def small_vault(dest: Path) -> Path:
    """A synthetic vault of a few notes with the real configuration, theme, assets and plugin
    (vault/synthetic.py): for the tests that build a broken copy, in a second or two instead of the
    real vault's ten."""
    from vault.synthetic import make_vault
    return make_vault(dest, notes=6, real_root=ROOT)


@pytest.fixture
def small_project(tmp_path: Path) -> Path:
    return small_vault(tmp_path / "small")


def add_note(project: Path, rel: str, text: str) -> Path:
    """Write docs/<rel> and list it in its folder's index page, as a contributor would."""
    path = write(project / "docs" / rel, text)
    index = path.parent / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + f"\n1. [[{path.stem}]]\n", encoding="utf-8")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# Browser fixtures live here, once per test process: Playwright's sync API allows one instance.
@pytest.fixture(scope="session")
def browser():
    assert Path(CHROMIUM).exists(), "Chromium is missing: apt-get install chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    root = build_site(ROOT, tmp_path_factory.mktemp("site") / "site")
    server = Server(root)
    yield server.url, root
    server.close()
