"""The CSS that lets the browser skip off-screen blocks (content-visibility in kb.css) must not change
what a reader sees once a block is on screen. Containment can do that in two ways, and both are checked
on every page at a phone's width and on a sample at a desktop's:

- layout: a contained block's margins no longer collapse with its children's, so an element moves.
  Every element of the article must sit where it sits with containment off, in the same page;
- paint: a contained block clips what its children paint outside it, beyond its overflow-clip-margin.
  No child may reach further out than that (children of a scrolling box are clipped anyway).

The page is first made as tall as its content, so that every block is on screen and drawn."""
from __future__ import annotations

import pytest

from .browser import draw_whole_page, settle, uncontain
from .test_browser import html_pages

PHONE, DESKTOP = 412, 1280
DESKTOP_PAGES = ["index.html", "deep-learning/backpropagation/index.html", "notes/crops-lab/index.html",
                 "classical-cv/epipolar-geometry/index.html", "tags/index.html", "practice/index.html"]
SHARES = 2

# Every element of the article: left, top, width and height, flat (a list of lists is slow to pass back).
RECTS = """() => { const out = [];
  for (const e of document.querySelectorAll('.md-content *')) { const r = e.getBoundingClientRect();
    out.push(r.left, r.top + scrollY, r.width, r.height); }
  return out; }"""
NAME = """(i) => { const e = document.querySelectorAll('.md-content *')[i];
  return e.tagName + (typeof e.className == 'string' && e.className ? '.' + e.className.split(' ')[0] : ''); }"""


# Each contained block whose visible children reach further out than its clip margin, and how far (px).
CLIPPED = """() => { const out = [];
  const scrolls = s => s.overflowX !== 'visible' || s.overflowY !== 'visible';
  for (const e of document.querySelectorAll('*')) {
    const s = getComputedStyle(e);
    if (s.contentVisibility !== 'auto' || scrolls(s)) continue;
    const margin = parseFloat(s.overflowClipMargin) || 0, r = e.getBoundingClientRect();
    let worst = 0, who = '';
    for (const d of e.querySelectorAll('*')) {
      if (d.closest('.katex-mathml')) continue;  // KaTeX's MathML copy: clipped to 1 px, for screen readers
      let a = d.parentElement;
      while (a !== e && !scrolls(getComputedStyle(a))) a = a.parentElement;
      if (a !== e) continue;
      const q = d.getBoundingClientRect();
      if (!q.width || !q.height) continue;
      const reach = Math.max(r.left - q.left, q.right - r.right, r.top - q.top, q.bottom - r.bottom);
      if (reach > worst) { worst = reach; who = d.tagName + '.' + (typeof d.className == 'string' ? d.className : ''); }
    }
    if (worst > margin)
      out.push(`${e.tagName}.${e.className} > ${who} reaches ${worst.toFixed(1)} px out, clip margin ${margin} px`);
  }
  return out; }"""


def containment_faults(page) -> list[str]:
    draw_whole_page(page)
    contained = page.evaluate(RECTS)
    clipped = page.evaluate(CLIPPED)
    uncontain(page)
    page.wait_for_timeout(50)
    free = page.evaluate(RECTS)
    assert len(contained) == len(free)
    moved = [i for i in range(0, len(free), 4)
             if max(abs(a - b) for a, b in zip(contained[i:i + 4], free[i:i + 4])) > 0.5]
    moved = [f"{page.evaluate(NAME, i // 4)} at ({contained[i]:.1f}, {contained[i + 1]:.1f}) "
             f"{contained[i + 2]:.1f}x{contained[i + 3]:.1f}, not ({free[i]:.1f}, {free[i + 1]:.1f}) "
             f"{free[i + 2]:.1f}x{free[i + 3]:.1f}" for i in moved[:3]]
    return [f"moved: {m}" for m in moved] + [f"clipped: {c}" for c in clipped[:3]]


def check(browser, base: str, pages: list[str], width: int) -> list[str]:
    page = browser.new_page(viewport={"width": width, "height": 800})
    found = []
    for rel in pages:
        page.goto(base + rel)
        settle(page, network_idle=False)
        found += [f"{rel} at {width} px: {f}" for f in containment_faults(page)]
        page.set_viewport_size({"width": width, "height": 800})
    page.close()
    return found


@pytest.mark.timeout(900)
@pytest.mark.parametrize("share", range(SHARES))
def test_skipping_offscreen_blocks_moves_and_clips_nothing(browser, site, share):
    url, root = site
    pages = html_pages(root)
    assert len(pages) >= 60
    found = check(browser, url, pages[share::SHARES], PHONE)
    found += check(browser, url, DESKTOP_PAGES[share::SHARES], DESKTOP)
    assert not found, "\n".join(found)


def test_the_check_catches_a_block_that_moves_or_clips(browser, site):
    url, _ = site
    page = browser.new_page(viewport={"width": PHONE, "height": 800})
    page.goto(url + "deep-learning/backpropagation/index.html")
    settle(page, network_idle=False)
    # The title's margins collapse with the article's, and a paragraph gets a child poking out above it.
    page.evaluate("""() => { const h = document.querySelector('.md-typeset > h1');
      h.style.contentVisibility = 'auto';
      const p = document.querySelectorAll('.md-typeset > p')[3], s = document.createElement('span');
      s.textContent = 'up'; s.style.position = 'relative'; s.style.top = '-4em'; p.prepend(s); }""")
    faults = containment_faults(page)
    assert any(f.startswith("moved: ") for f in faults), faults
    assert any(f.startswith("clipped: P.") and "SPAN." in f for f in faults), faults
