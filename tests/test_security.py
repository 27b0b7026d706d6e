"""Safe contributions: hostile HTML is rejected at its line and never written; the CSP holds.

The payloads are fixtures in tests/payloads/: one class of attack a file, one payload a line.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config
from selectolax.lexbor import LexborHTMLParser

from vault import allowlist, csp
from vault.check import main as check_main
from vault.urls import clean_dest_uri

from .browser import Server, build_site, watch
from .conftest import ROOT, write

PAYLOAD_DIR = Path(__file__).parent / "payloads"
PAYLOAD_LINE = 3  # each payload note is "# Payload <id>", a blank line, the payload


def load_payloads() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(PAYLOAD_DIR.glob("*.txt")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            text, expected = line.rsplit(" => ", 1)
            found.append((f"{path.stem}-{n}", text, expected))
    return found


PAYLOADS = load_payloads()


def copy_project(dest: Path) -> Path:
    for name in ("docs", "snippets", "overrides"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", dest / "mkdocs.yml")
    return dest


def note_of(pid: str) -> str:
    return f"Payload {pid}.md"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A copy of the vault with every payload alone in a note: what `make check` prints, and the
    site a (non-strict) build writes anyway."""
    project = copy_project(tmp_path_factory.mktemp("hostile"))
    for pid, text, _ in PAYLOADS:
        write(project / "docs" / note_of(pid), f"# Payload {pid}\n\n{text}\n")
    write(project / "docs" / CODE_NOTE, CODE_IS_TEXT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = check_main(["--root", str(project)])
    site = project / "site"
    logger = logging.getLogger("mkdocs")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the payloads' warnings are expected; restored for later tests
    try:
        build(load_config(str(project / "mkdocs.yml"), site_dir=str(site), strict=False))
    finally:
        logger.setLevel(level)
    return code, out.getvalue(), site


CODE_NOTE = "Code is fine.md"
CODE_IS_TEXT = """# Code is fine

Write `<script>alert(1)</script>` and `<img src=x onerror=alert(1)>` as code: they are shown, not run.

```html
<svg/onload=alert(1)><meta http-equiv="refresh" content="0;url=https://example.org/">
```
"""


def test_html_inside_code_is_text(hostile):
    code, out, site = hostile
    assert f"docs/{CODE_NOTE}:" not in out
    article = LexborHTMLParser((site / clean_dest_uri(CODE_NOTE)).read_text(encoding="utf-8")).css_first("article")
    text = article.text()
    assert "This page is withheld" not in text
    assert "<svg/onload=alert(1)>" in text and "<script>alert(1)</script>" in text
    assert not article.css("svg[onload], script, meta")


def test_there_are_payloads_of_each_class():
    classes = {pid.split("-")[0] for pid, _, _ in PAYLOADS}
    assert classes == {"script", "navigation", "privacy"} and len(PAYLOADS) >= 40


@pytest.mark.parametrize("pid, text, expected", PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_make_check_rejects_the_payload_at_its_line(hostile, pid, text, expected):
    code, out, _ = hostile
    assert code == 1
    at = f"docs/{note_of(pid)}:{PAYLOAD_LINE}: "
    mine = [line for line in out.splitlines() if line.startswith(at)]
    assert any(expected in line for line in mine), f"no {at}…{expected} for {text!r}; got {mine}"


@pytest.mark.parametrize("pid, text, expected", PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_nothing_of_the_payload_is_written_to_the_site(hostile, pid, text, expected):
    _, _, site = hostile
    page = LexborHTMLParser((site / clean_dest_uri(note_of(pid))).read_text(encoding="utf-8"))
    article = page.css_first("article")
    assert "This page is withheld" in article.text()
    for theirs in article.css(".md-content__button"):  # the theme's edit button
        theirs.decompose()
    assert allowlist.check(article.inner_html) == []
    for node in page.css("*"):  # anywhere in the page: no handler, no script URL, no foreign URL
        for name, value in node.attributes.items():
            assert not name.startswith("on"), (node.tag, name)
            assert not re.search(r"example\.org|script:", value or "", re.I), (node.tag, name, value)


def test_the_real_vault_has_no_findings(site):
    """The site as it is passes the allow-list: it is what the Markdown extensions produce."""
    _, root = site
    pages = list(root.rglob("*.html"))
    assert len(pages) >= 60
    assert not [p for p in pages if "This page is withheld" in p.read_text(encoding="utf-8")]


# --- what the theme prints from a note: front matter, file names -----------------------------

RANSAC = "docs/classical-cv/RANSAC.md"


def run_vault_checks(project: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = check_main(["--root", str(project), "--no-build"])
    return code, out.getvalue()


@pytest.mark.parametrize("line, expected", [
    ('description: \'"><meta http-equiv="refresh" content="0;url=https://example.org/">\'', "key 'description'"),
    ("title: <img src=x onerror=alert(1)>", "key 'title'"),
    ("template: ../../../etc/passwd", "key 'template'"),
])
def test_front_matter_keys_the_theme_prints_are_rejected(project, line, expected):
    path = project / RANSAC
    path.write_text(path.read_text(encoding="utf-8").replace("---\n", f"---\n{line}\n", 1), encoding="utf-8")
    code, out = run_vault_checks(project)
    assert code == 1 and f"{RANSAC}:2: front matter: {expected} is not allowed" in out, out


@pytest.mark.parametrize("value", ["<img src=x onerror=alert(1)>", 'a"b', "&lt;b&gt;"])
def test_tags_must_be_plain_text(project, value):
    path = project / RANSAC
    text = path.read_text(encoding="utf-8")
    tags_line = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("tags:"))
    path.write_text(text.replace("tags:\n", f"tags:\n  - {json.dumps(value)}\n", 1), encoding="utf-8")
    code, out = run_vault_checks(project)
    assert code == 1 and f"{RANSAC}:{tags_line}: front matter: tags must be plain text" in out, out


def test_plain_text_is_plain():
    assert allowlist.is_plain_text("Ботлнек слой в реснете") and allowlist.is_plain_text("a < b")
    assert not allowlist.is_plain_text("a <b>c</b>") and not allowlist.is_plain_text("x<!-- y -->")


def test_a_file_name_the_theme_would_print_as_html_is_rejected(project):
    write(project / 'docs/notes/Bad "name".md', "# x\n")
    code, out = run_vault_checks(project)
    assert code == 1 and 'docs/notes/Bad "name".md:1: file name has one of' in out, out


def test_a_notebook_outside_the_nbformat_schema_is_rejected(project):
    path = next((project / "docs").rglob("*.ipynb"))
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["cells"][0]["id"] = 'x" onmouseover="alert(1)'
    path.write_text(json.dumps(nb), encoding="utf-8")
    code, out = run_vault_checks(project)
    rel = path.relative_to(project).as_posix()
    assert code == 1 and f"{rel}:1: notebook does not follow the nbformat schema" in out, out


# --- the Content-Security-Policy -------------------------------------------------------------

def test_every_page_carries_the_one_policy(site):
    _, root = site
    metas = set()
    for path in root.rglob("*.html"):
        head = LexborHTMLParser(path.read_text(encoding="utf-8")).head
        first = head.css_first("meta")
        assert first is not None and first.attributes.get("http-equiv") == "Content-Security-Policy", path
        metas.add(first.attributes["content"])
    assert len(metas) == 1
    policy = dict(d.strip().split(" ", 1) for d in metas.pop().split(";"))
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'self'"
    assert policy["form-action"] == "'none'" and policy["script-src-attr"] == "'none'"
    assert policy["script-src"].startswith("'self' 'sha256-") and "unsafe" not in policy["script-src"]
    assert all(s in ("'self'", "data:", "'none'", "'unsafe-inline'") or s.startswith("'sha256-")
               for sources in policy.values() for s in sources.split()), "only the site itself may be named"


INJECTED = ('<script>window.kbInjected = 1</script>'
            '<img src="missing.png" onerror="window.kbHandler = 1">'
            '<img src="https://example.org/pixel.png">')


@pytest.fixture(scope="module")
def injected_site(site, tmp_path_factory):
    """The built site plus two copies of a page with a script, a handler and a foreign image
    injected into its article: one keeps the policy, one has it taken out (the control)."""
    _, root = site
    copy = tmp_path_factory.mktemp("injected") / "site"
    shutil.copytree(root, copy)
    page = (root / "classical-cv/ransac/index.html").read_text(encoding="utf-8")
    assert csp.META_START in page
    hurt = page.replace('<article class="md-content__inner md-typeset">',
                        '<article class="md-content__inner md-typeset">' + INJECTED, 1)
    write(copy / "classical-cv/injected/index.html", hurt)
    bare = re.sub(re.escape(csp.META_START) + r'[^"]*">', "", hurt)
    write(copy / "classical-cv/injected-bare/index.html", bare)
    server = Server(copy)
    yield server.url
    server.close()


def open_injected(browser, url: str):
    page = browser.new_context().new_page()
    visit = watch(page, url.split("classical-cv/")[0])
    page.goto(url)
    page.wait_for_load_state("networkidle")
    ran = page.evaluate("[window.kbInjected === 1, window.kbHandler === 1]")
    return ran, visit


def test_the_policy_blocks_an_injected_script_handler_and_foreign_image(browser, injected_site):
    (script_ran, handler_ran), visit = open_injected(browser, injected_site + "classical-cv/injected/")
    assert not script_ran and not handler_ran
    blocked = " ".join(visit.csp_violations)
    assert "script-src-elem blocked inline" in blocked and "script-src-attr blocked inline" in blocked
    assert "img-src blocked https://example.org/pixel.png" in blocked
    assert visit.foreign_requests == []  # the browser never asked


def test_without_the_policy_the_same_injection_runs(browser, injected_site):
    """The control: the test would see the injection if the policy let it through."""
    (script_ran, handler_ran), visit = open_injected(browser, injected_site + "classical-cv/injected-bare/")
    assert script_ran and handler_ran
    assert visit.foreign_requests == ["https://example.org/pixel.png"]


@pytest.fixture(scope="module")
def site_at_its_url(tmp_path_factory):
    """The site built for the address it is served at: Material's instant navigation only takes
    over links listed in the sitemap, which names pages by site_url."""
    root = tmp_path_factory.mktemp("own-url") / "site"
    root.mkdir()
    server = Server(root)
    build_site(ROOT, root, site_url=server.url)
    yield server.url
    server.close()


def test_instant_navigation_keeps_working_under_the_policy(browser, site_at_its_url):
    url = site_at_its_url
    page = browser.new_context().new_page()
    visit = watch(page, url)
    page.goto(url + "classical-cv/")
    page.wait_for_load_state("networkidle")
    page.evaluate("window.kbSamePage = true")
    page.locator("article a[href*='ransac']").first.click()
    page.wait_for_url(re.compile(r"classical-cv/ransac/"))
    page.wait_for_function("() => document.querySelectorAll('.arithmatex .katex').length >= 10", timeout=15000)
    assert page.evaluate("window.kbSamePage === true"), "the page was reloaded, not swapped in"
    assert not visit.problems, visit.problems
