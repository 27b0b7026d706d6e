"""Math at build time: KaTeX HTML for the page, readable Unicode text for search.

The Markdown keeps `$...$` (Obsidian renders it); pymdownx.arithmatex wraps it as
`<span class="arithmatex">\\(...\\)</span>` or `<div class="arithmatex">\\[...\\]</div>`, and notebook
cells keep it as `$...$` in `.jp-RenderedMarkdown`. `render` replaces both with the output of the
vendored KaTeX (docs/assets/vendor/katex/katex.min.js, run by QuickJS), so a reader's browser runs
no math script; only katex.min.css and the fonts it uses load, on pages that have math.
KaTeX costs a few milliseconds per formula: each distinct formula is rendered once and kept under
.cache/ (vault/diskcache.py), keyed by the KaTeX file's hash and the TeX.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import re
import threading
from html import escape, unescape
from pathlib import Path

from . import diskcache

ROOT = Path(__file__).resolve().parent.parent
KATEX_JS = ROOT / "docs" / "assets" / "vendor" / "katex" / "katex.min.js"
PYLATEXENC = f"pylatexenc {importlib.metadata.version('pylatexenc')}"
# arithmatex's generic output: the TeX inside is HTML-escaped.
ARITHMATEX_RE = re.compile(
    r'<(span|div) class="arithmatex">(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<display>.*?)\\\])</\1>', re.S)
TABLE_HEADER_RE = re.compile(r"<th\b[^>]*>.*?</th>", re.S)
NOTEBOOK_CELL_RE = re.compile(r'(<div class="[^"]*\bjp-RenderedMarkdown\b[^"]*"[^>]*>)(.*?)(</div>)', re.S)
# Inside a notebook cell: leave code and tags alone, find $$..$$, $..$, \(..\), \[..\] in the text.
CELL_TOKEN_RE = re.compile(r"<pre\b.*?</pre>|<code\b.*?</code>|<[^>]+>", re.S)
CELL_MATH_RE = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$", re.S)


class MathError(ValueError):
    """A formula KaTeX cannot typeset (its message names the problem)."""


class Katex:
    """The vendored KaTeX in an embedded JavaScript engine (QuickJS contexts are not thread-safe)."""

    def __init__(self, source: str):
        import quickjs  # imported here: only builds need it, not the checker
        self.lock = threading.Lock()
        self.context = quickjs.Context()
        self.context.eval("var self = globalThis;")
        self.context.eval(source)
        self.context.eval(
            "function kbRender(tex, display, output) { try { return JSON.stringify(['', katex.renderToString(tex, "
            "{displayMode: display, throwOnError: true, output: output})]); } "
            "catch (e) { return JSON.stringify([String(e.message || e), '']); } }")
        self.function = self.context.get("kbRender")

    def __call__(self, tex: str, display: bool, output: str) -> str:
        with self.lock:
            error, html = json.loads(self.function(tex, display, output))
        if error:
            raise MathError(error)
        return html


@functools.lru_cache(maxsize=1)
def _katex_version() -> str:
    return hashlib.sha256(KATEX_JS.read_bytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _katex() -> Katex:  # started only when a formula is not in the cache
    return Katex(KATEX_JS.read_text(encoding="utf-8"))


def typeset(tex: str, display: bool, output: str = "htmlAndMathml") -> str:
    """KaTeX HTML (with MathML for assistive technology) for one formula; MathError if it is invalid.
    `output="html"` leaves the MathML out and the HTML readable by assistive technology."""
    key = diskcache.key(_katex_version(), diskcache.code_version(Katex), str(int(display)), output, tex)
    return diskcache.named("katex-html").through(key, lambda: _katex()(tex, display, output))


def render(html: str, on_error) -> str:
    """The page with every formula typeset. `on_error(tex, message)` is told of each invalid one,
    which is then left as TeX in a <code> element."""

    def one(tex: str, display: bool, output: str = "htmlAndMathml") -> str:
        try:
            out = typeset(tex, display, output)
        except MathError as e:
            on_error(tex, str(e))
            return f"<code>{escape(tex)}</code>"
        return out

    def arithmatex(m: re.Match, output: str = "htmlAndMathml") -> str:
        display = m.group("display") is not None
        tex = unescape(m.group("display") if display else m.group("inline"))
        return f'<{m.group(1)} class="arithmatex">{one(tex.strip(), display, output)}</{m.group(1)}>'

    # A table header must have text that assistive technology reads: there the formula is KaTeX's
    # HTML alone, not hidden behind MathML (axe: empty-table-header).
    html = TABLE_HEADER_RE.sub(
        lambda th: ARITHMATEX_RE.sub(lambda m: arithmatex(m, "html"), th.group(0))
        .replace('class="katex-html" aria-hidden="true"', 'class="katex-html"'), html)
    html = ARITHMATEX_RE.sub(arithmatex, html)
    if "jp-RenderedMarkdown" in html:
        html = NOTEBOOK_CELL_RE.sub(lambda m: m.group(1) + _cell_math(m.group(2), one) + m.group(3), html)
    return html


def _cell_math(cell: str, one) -> str:
    def text(segment: str) -> str:
        def formula(m: re.Match) -> str:
            display = m.group(1) is not None or m.group(2) is not None
            tex = unescape(next(g for g in m.groups() if g is not None)).strip()
            tag = "div" if display else "span"
            return f'<{tag} class="arithmatex">{one(tex, display)}</{tag}>'
        return CELL_MATH_RE.sub(formula, segment)

    out, at = [], 0
    for m in CELL_TOKEN_RE.finditer(cell):
        out += [text(cell[at:m.start()]), m.group(0)]
        at = m.end()
    out.append(text(cell[at:]))
    return "".join(out)


@functools.lru_cache(maxsize=1)
def _latex_to_text():
    # One converter per process: building one loads pylatexenc's macro tables (about 1 ms each).
    from pylatexenc.latex2text import LatexNodes2Text
    return LatexNodes2Text(math_mode="verbatim")


def readable(tex: str) -> str:
    """A formula as plain Unicode text for search and result previews: `\\frac{a}{b}` as a/b, σ for \\sigma.
    pylatexenc takes about a millisecond a formula, so the text is kept in .cache/ (vault/diskcache.py)."""
    version = diskcache.code_version(_readable, _latex_to_text)
    return diskcache.named("readable-math").through(diskcache.key(PYLATEXENC, version, tex), lambda: _readable(tex))


def _readable(tex: str) -> str:
    try:
        text = _latex_to_text().latex_to_text(tex)
    except Exception:  # pylatexenc gives up on some constructs: keep the TeX rather than nothing
        text = tex
    return " ".join(text.split())


def readable_html(html: str) -> str:
    """The page with each arithmatex formula replaced by readable text (for the search index)."""
    def one(m: re.Match) -> str:
        tex = unescape(m.group("display") if m.group("display") is not None else m.group("inline"))
        return f"<{m.group(1)}>{escape(readable(tex.strip()))}</{m.group(1)}>"
    return ARITHMATEX_RE.sub(one, html)
