"""Every page of the built site, in both palettes, visited once: it loads without console errors, CSP
violations or foreign requests, its math and diagrams render, and axe-core (npm, pinned in package.json)
finds no violation.

axe-core runs under the page's own Content-Security-Policy (injected through the DevTools protocol,
which the policy does not govern), so one visit checks both. All of axe's enabled rules run (WCAG 2.x A
and AA and its best practices), in two parts:

- the rules about structure (names, roles, headings, landmarks, ids, alt text…) on the whole page;
- the two colour rules (color-contrast, link-in-text-block) on every text element whose rendering has
  not been checked yet in this palette. An element's rendering is what those rules measure: its colour,
  size, weight, decoration, shadow and opacity, its parent's colour, and the colours and images of
  every background behind it. The navigation, header and code tokens repeat on every page; checking them
  once instead of on all 100-odd pages is what makes the test run in minutes, not half an hour.

The palette is switched once a page, as a reader does with the header's toggle. The choice is
remembered, so the next page opens in it and is checked in that palette first.

KaTeX's HTML is left out: it is aria-hidden glyph boxes (assistive technology reads the MathML beside
it), it inherits the text colour, and its thousands of nodes made one math page take 20 s to check."""
from __future__ import annotations

import pytest

from .browser import raw_math, settle, watch
from .conftest import ROOT
from .test_browser import html_pages

SHARES = 4  # so that test workers split the pages
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
COLOUR_RULES = ["color-contrast", "link-in-text-block"]
EXCLUDE = [[".katex-html"]]

# Marks the visible text elements whose rendering is new (data-kb-fresh) and returns their keys.
MARK_FRESH = """(seen) => {
  seen = new Set(seen);
  document.querySelectorAll('[data-kb-fresh]').forEach(el => el.removeAttribute('data-kb-fresh'));
  const fresh = [], marked = [];
  const paint = c => c.backgroundColor + ' ' + c.backgroundImage + ' ' + c.opacity + ' ' + c.mixBlendMode;
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('.katex-html') || !el.checkVisibility()) continue;
    if (![...el.childNodes].some(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim())) continue;
    const s = getComputedStyle(el);
    const behind = [];
    for (let a = el; a; a = a.parentElement) behind.push(paint(getComputedStyle(a)));
    // A link's own rule (link-in-text-block) applies only beside other text in the same block.
    const inText = el.tagName === 'A' && [...el.parentElement.childNodes]
        .some(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    const key = [el.tagName === 'A' ? (inText ? 'a in text' : 'a') : 'text',
                 s.color, s.fontSize, s.fontWeight, s.textDecorationLine, s.textShadow,
                 el.parentElement ? getComputedStyle(el.parentElement).color : '', ...behind].join('|');
    if (!seen.has(key)) { seen.add(key); fresh.push(key); marked.push(el); }
  }
  // Marked after the walk: changing the DOM during it would make every later style read recompute.
  for (const el of marked) el.setAttribute('data-kb-fresh', '');
  return fresh;
}"""
RUN_AXE = """async ([context, options]) => {
  const r = await axe.run(context, Object.assign({resultTypes: ['violations']}, options));
  return r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3)
      .map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').split('\\n').slice(1, 2).join('')).join(' | '));
}"""


def axe_source() -> str:
    assert AXE.is_file(), f"{AXE} is missing: run `npm ci` (.ci/run does)"
    return AXE.read_text(encoding="utf-8")


def structure_violations(page) -> list[str]:
    off = {rule: {"enabled": False} for rule in COLOUR_RULES}
    return page.evaluate(RUN_AXE, [{"exclude": EXCLUDE}, {"rules": off}])


def colour_violations(page, seen: set[str]) -> list[str]:
    """The colour rules on the elements rendered in a way not yet in `seen` (which grows)."""
    fresh = page.evaluate(MARK_FRESH, sorted(seen))
    seen.update(fresh)
    if not fresh:
        return []
    return page.evaluate(RUN_AXE, [{"include": [["[data-kb-fresh]"]], "exclude": EXCLUDE},
                                   {"runOnly": {"type": "rule", "values": COLOUR_RULES}}])


def palette_of(page) -> str:
    return page.get_attribute("body", "data-md-color-scheme")


def toggle_palette(page, palette: str) -> None:
    page.locator("label.md-header__button[for^='__palette_']:visible").click()
    # A function, not an expression: Playwright polls an expression with eval, which the CSP forbids.
    page.wait_for_function(f"() => document.body.getAttribute('data-md-color-scheme') === '{palette}'")


def load_axe(page) -> None:
    if not page.evaluate("() => typeof axe === 'object'"):
        page.evaluate(axe_source() + "\n;0")


@pytest.mark.timeout(900)  # a few seconds a page on an idle machine, several times that when loaded
@pytest.mark.parametrize("share", range(SHARES))
def test_every_page_loads_cleanly_renders_and_passes_axe(browser, site, share):
    url, root = site
    pages = html_pages(root)
    assert len(pages) >= 60
    context = browser.new_context(color_scheme="light", viewport={"width": 412, "height": 823})
    page = context.new_page()
    visit = watch(page, url)
    seen: dict[str, set[str]] = {"light": set(), "dark": set()}
    found, unrendered = [], []
    opens_in = "default"  # the context prefers light; after the first page, the palette chosen last
    for rel in pages[share::SHARES]:
        page.goto(url + rel)
        if not settle(page, network_idle=False) or raw_math(page):  # axe then runs for a second or more
            unrendered.append(rel)
        load_axe(page)
        found += [f"{rel}: {v}" for v in structure_violations(page)]  # structure does not depend on the palette
        assert palette_of(page) == opens_in, f"{rel} opened in {palette_of(page)}, not in the palette chosen last"
        first, second = ("light", "dark") if opens_in == "default" else ("dark", "light")
        found += [f"{rel} ({first}): {v}" for v in colour_violations(page, seen[first])]
        opens_in = "slate" if opens_in == "default" else "default"
        toggle_palette(page, opens_in)  # as a reader does, with the header's toggle: no reload
        found += [f"{rel} ({second}): {v}" for v in colour_violations(page, seen[second])]
    context.close()
    assert not visit.problems, visit.problems
    assert not unrendered, f"math or diagrams did not render on {unrendered}"
    assert not found, "\n".join(found)


def test_axe_catches_a_missing_alt_text(browser, site):
    url, _ = site
    page = browser.new_page()
    page.goto(url)
    page.evaluate("""() => { const i = document.createElement('img'); i.src = 'x.png';
                             document.querySelector('article').appendChild(i); }""")
    load_axe(page)
    assert any(v.startswith("image-alt") for v in structure_violations(page))


def test_a_new_low_contrast_style_is_checked_even_after_many_pages(browser, site):
    url, root = site
    page = browser.new_page(color_scheme="dark")
    seen: set[str] = set()
    for rel in html_pages(root)[:8]:
        page.goto(url + rel)
        load_axe(page)
        assert colour_violations(page, seen) == []
    assert len(seen) > 20
    assert colour_violations(page, seen) == []  # the same page again: nothing new to check
    page.evaluate("""() => { const p = document.createElement('p'); p.textContent = 'faint text';
                             p.style.color = '#3a3a3a'; document.querySelector('article').appendChild(p); }""")
    assert any(v.startswith("color-contrast") for v in colour_violations(page, seen))
