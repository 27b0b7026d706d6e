"""axe-core (npm, pinned in package.json) on every page of the built site, in both palettes: 0 violations.

All of axe's rules run (WCAG 2.x A and AA and its best practices). KaTeX's HTML is left out of the
scan: it is aria-hidden glyph boxes (assistive technology reads the MathML beside it), it inherits
the text colour, and its thousands of nodes made one math page take 20 s to check."""
from __future__ import annotations

import pytest

from .conftest import ROOT
from .test_browser import html_pages

SHARES = 3  # per palette, so that test workers split the pages
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
RUN_AXE = """async () => {
  const r = await axe.run({exclude: [['.katex-html']]}, {resultTypes: ['violations']});
  return r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3)
      .map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').split('\\n').slice(1, 2).join('')).join(' | '));
}"""


def axe_source() -> str:
    assert AXE.is_file(), f"{AXE} is missing: run `npm ci` (.ci/run does)"
    return AXE.read_text(encoding="utf-8")


def violations(page) -> list[str]:
    page.add_script_tag(content=axe_source())
    return page.evaluate(RUN_AXE)


@pytest.mark.timeout(900)  # axe takes 1–3 s a page on an idle machine, several times that when loaded
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("share", range(SHARES))
def test_axe_finds_no_violation_on_any_page(browser, site, scheme, share):
    url, root = site
    # bypass_csp: the page's own policy rightly blocks the inline script that injects axe-core
    context = browser.new_context(color_scheme=scheme, viewport={"width": 412, "height": 823}, bypass_csp=True)
    page = context.new_page()
    found = []
    for rel in html_pages(root)[share::SHARES]:
        page.goto(url + rel, wait_until="load")
        expected = "slate" if scheme == "dark" else "default"
        assert page.get_attribute("body", "data-md-color-scheme") == expected
        found += [f"{rel}: {v}" for v in violations(page)]
    context.close()
    assert not found, "\n".join(found)


def test_axe_catches_a_violation(browser, site):
    url, _ = site
    page = browser.new_page(bypass_csp=True)
    page.goto(url)
    page.evaluate("""() => { const i = document.createElement('img'); i.src = 'x.png';
                             document.querySelector('article').appendChild(i); }""")
    assert any(v.startswith("image-alt") for v in violations(page))
