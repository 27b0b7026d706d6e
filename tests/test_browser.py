"""The site as readers meet it, in a real browser (Debian's Chromium, driven by Playwright)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from vault.vault import Vault

from .browser import Server, build_site, raw_math, settle, watch
from .conftest import ROOT, add_note, small_vault

# (query, the page expected as the first hit). Aliases, including the seed's Russian line, must find their page.
SEARCHES = [
    ("RANSAC", "classical-cv/ransac/"),
    ("random sample consensus", "classical-cv/ransac/"),
    ("Ботлнек слой в реснете", "notes/resnet/"),                  # the seed's own Russian line, an alias
    ("батчнорм до или после активации", "notes/network-topology/"),
    ("vanishing gradient", "deep-learning/vanishing-gradients/"),
    ("lucas kanade optical flow", "classical-cv/optical-flow/"),
    ("region proposal network", "cv-deep-learning/region-proposal-network/"),
    ("LSTM GRU", "deep-learning/lstm-and-gru/"),
    ("camera calibration lens distortion", "classical-cv/camera-calibration/"),
    ("face recognition airport", "case-studies/airport-face-recognition/"),
    ("A/B testing", "production/a-b-testing-ml-models/"),
    ("optimizers", "deep-learning/gradient-descent-and-optimizers/"),  # a title beats code using torch.optim
    ("findHomography", "classical-cv/homography/"),                   # API names in code stay findable
]


def open_page(browser, url: str, origin: str, settle_ms: int = 15000):
    context = browser.new_context()
    page = context.new_page()
    visit = watch(page, origin)
    page.goto(url)
    settle(page, settle_ms)
    return page, visit


def html_pages(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if p.name != "404.html" and not p.relative_to(root).parts[0] == "assets")


def search(page, query: str, origin: str) -> list[str]:
    """Type a query into the search box; return the result pages, best first, relative to the site."""
    # The whole query at once: typed key by key, the results of a prefix ("optimiz") can show
    # first, and a loaded machine reads those. A real key press then makes Material search.
    page.fill("input.md-search__input", query)
    page.keyboard.press("End")
    page.wait_for_selector("li.md-search-result__item a.md-search-result__link", timeout=10000)
    hrefs = page.eval_on_selector_all("li.md-search-result__item > a.md-search-result__link",
                                      "els => els.map(e => e.href)")
    return [re.split(r"[?#]", h)[0].removeprefix(origin) for h in hrefs]


def test_search_finds_the_right_page_first(browser, site):
    url, _ = site
    page, visit = open_page(browser, url, url)
    wrong = []
    for query, expected in SEARCHES:  # one page, as a reader searching again and again
        page.fill("input.md-search__input", "")
        page.wait_for_function("() => !document.querySelector('li.md-search-result__item')")
        hits = search(page, query, url)
        if not hits or hits[0] != expected:
            wrong.append(f"{query!r}: {expected} expected first, got {hits[:3]}")
    assert not wrong, "\n".join(wrong)
    assert not visit.problems


def test_the_search_index_loads_only_when_a_reader_searches(browser, site):
    url, _ = site
    context = browser.new_context()
    page = context.new_page()
    fetched = []
    context.on("request", lambda r: fetched.append(r.url))  # the context sees the worker's requests too
    page.goto(url + "classical-cv/ransac/")
    settle(page)
    assert not [u for u in fetched if "kb_index" in u], fetched
    assert search(page, "homography", url)[0] == "classical-cv/homography/"
    assert [u for u in fetched if u.endswith("search/kb_index.js")]
    context.close()


def test_mermaid_loads_only_when_a_diagram_nears_the_viewport(browser, site):
    url, _ = site
    context = browser.new_context(viewport={"width": 412, "height": 823})  # a phone, as Lighthouse's
    page = context.new_page()
    fetched = []
    context.on("request", lambda r: fetched.append(r.url))
    page.goto(url + "deep-learning/backpropagation/")
    page.wait_for_load_state("networkidle")
    assert not [u for u in fetched if "mermaid" in u], fetched
    assert page.locator("div.kb-mermaid svg").count() == 0
    page.locator("div.kb-mermaid").first.scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('div.kb-mermaid')].every(d => d.querySelector('svg'))")
    assert [u for u in fetched if u.endswith("mermaid/mermaid.min.js")]
    context.close()


def test_math_renders(browser, site):
    url, _ = site
    page, visit = open_page(browser, url + "classical-cv/ransac/", url)
    assert page.locator(".arithmatex .katex").count() >= 10
    assert raw_math(page) == []
    assert not visit.problems
    # Typeset at build time: no math script runs in the reader's browser.
    scripts = page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
    assert not [s for s in scripts if "katex" in s], scripts


def test_dark_light_toggle(browser, site):
    url, _ = site
    page, _ = open_page(browser, url, url)
    def scheme():
        return page.get_attribute("body", "data-md-color-scheme")
    first = scheme()
    page.locator("label.md-header__button[for^='__palette_']:visible").click()
    # A function, not an expression: Playwright polls an expression with eval, which the CSP forbids.
    page.wait_for_function(f"() => document.body.getAttribute('data-md-color-scheme') !== '{first}'")
    assert {first, scheme()} == {"default", "slate"}
    page.locator("label.md-header__button[for^='__palette_']:visible").click()
    page.wait_for_function(f"() => document.body.getAttribute('data-md-color-scheme') === '{first}'")
    # From the keyboard: Enter on the focused toggle switches (kb.js runs it, not Material's bundle).
    page.locator("input.md-option:checked").focus()
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.body.getAttribute('data-md-color-scheme') !== '{first}'")
    # The choice is remembered: the next page opens in it.
    chosen = scheme()
    page.goto(url + "classical-cv/ransac/")
    assert scheme() == chosen


def test_tables_come_wrapped_from_the_build(browser, site):
    url, _ = site
    page, visit = open_page(browser, url + "deep-learning/backpropagation/", url)
    assert page.locator("article table.kb-table").count() >= 1
    # Material's script would wrap a bare table again once the page loads (restyling the article).
    assert page.locator("article table:not([class])").count() == 0
    assert page.locator(".md-typeset__scrollwrap .md-typeset__scrollwrap").count() == 0
    cell = page.locator("article table.kb-table td").first
    assert cell.evaluate("td => getComputedStyle(td).borderTopStyle") == "solid"
    assert cell.evaluate("td => parseFloat(getComputedStyle(td).paddingLeft)") > 0
    assert not visit.problems


def test_code_blocks_have_a_copy_button(browser, site):
    url, _ = site
    page, _ = open_page(browser, url + "classical-cv/ransac/", url)
    blocks = page.locator("article pre").count()
    assert blocks >= 4
    assert page.locator("article .md-code__button[data-md-type='copy'], article button.md-clipboard").count() >= blocks


def test_wikilink_lands_on_the_target_heading(browser, site):
    vault = Vault.load(ROOT / "docs")
    source, link = next((uri, l) for uri, links in sorted(vault.links.items()) for l in links
                        if l.name and l.heading and not l.alias)
    target = vault.target(link)
    heading = next(h for h in vault.headings_of(target) if h.text.lower() == link.heading.lower())
    url, _ = site
    page, _ = open_page(browser, url + clean_url(source), url)
    page.get_by_role("link", name=f"{vault.title(target)} › {heading.text}").first.click()
    page.wait_for_url(re.compile(f"#{re.escape(heading.id)}$"))
    assert page.url.split("#")[0].endswith(clean_url(target))
    assert page.locator(f"[id='{heading.id}']").is_visible()
    assert page.evaluate(f"document.getElementById('{heading.id}').getBoundingClientRect().top") < 300


def test_linked_from_lists_the_real_backlinks(browser, site):
    vault = Vault.load(ROOT / "docs")
    assert vault.backlinks, "no note links to another note"
    url, _ = site
    page, _ = open_page(browser, url, url)
    for target, sources in sorted(vault.backlinks.items())[:5]:
        page.goto(url + clean_url(target))
        hrefs = page.eval_on_selector_all("#linked-from + ul a", "els => els.map(a => a.href)")
        expected = {url + clean_url(s) for s in sources}
        assert set(hrefs) == expected, (target, hrefs)


def clean_url(uri: str) -> str:
    from vault.urls import clean_dest_uri
    return clean_dest_uri(uri).removesuffix("index.html")


# --- the detectors themselves catch what they are meant to catch -------------------------------

# A foreign request can no longer be built into a page (the allow-list rejects it, the CSP blocks it):
# test_security.py's test_without_the_policy_the_same_injection_runs shows that watch() catches one.
FAULTS = {
    "Missing figure.md": '# Missing figure\n\n<img src="no-such-figure.png" alt="a figure that is not there">\n',
    "Raw math.md": "# Raw math\n\n<p>$$x^2$$</p>\n",  # Markdown leaves a raw HTML block alone
}


@pytest.fixture(scope="module")
def faulty_site(tmp_path_factory):
    project = small_vault(tmp_path_factory.mktemp("faulty") / "project")
    for name, text in FAULTS.items():
        add_note(project, f"section-00/{name}", text)
    server = Server(build_site(project, project / "site"))
    yield server.url
    server.close()


def test_a_console_error_is_caught(browser, faulty_site):
    _, visit = open_page(browser, faulty_site + "section-00/missing-figure/", faulty_site, settle_ms=3000)
    assert any("404" in e for e in visit.console_errors), visit.console_errors


def test_invalid_math_fails_the_build_naming_page_and_line(small_project):
    project = small_project
    add_note(project, "section-00/Broken math.md",
             "# Broken math\n\nSome text.\n\nAn undefined macro: $\\notamacro{x}$.\n")
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(project / "site")],
                          cwd=project, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), capture_output=True, text=True)
    assert proc.returncode != 0
    expected = "section-00/Broken math.md:5: KaTeX parse error: Undefined control sequence: \\notamacro"
    assert expected in proc.stderr, proc.stderr[-2000:]


def test_unrendered_math_is_caught(browser, faulty_site):
    page, _ = open_page(browser, faulty_site + "section-00/raw-math/", faulty_site, settle_ms=3000)
    assert raw_math(page) == ["$$"]


# --- offline copy ---------------------------------------------------------------------------------

def test_offline_copy_works_from_disk_with_search(browser, tmp_path):
    root = build_site(ROOT, tmp_path / "site-offline", offline=True)
    origin = root.as_uri() + "/"
    page, visit = open_page(browser, origin + "index.html", origin)
    hits = search(page, "random sample consensus", origin)
    assert hits[0] == "classical-cv/ransac.html", hits
    page.click("li.md-search-result__item > a.md-search-result__link")
    page.wait_for_url(re.compile(r"classical-cv/ransac\.html"))
    settle(page)
    assert page.locator(".arithmatex .katex").count() >= 10
    assert not visit.problems, visit.problems
