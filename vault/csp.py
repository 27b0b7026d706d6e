"""The Content-Security-Policy of the site, written into every page as a <meta> tag.

GitHub Pages sets no response headers, so the policy travels in the page. It is one policy for the
whole site: Material's instant navigation adds a page's new <head> elements to the current page, and
two different policies would both apply. Scripts run only from the site's own files, plus the
theme's own inline scripts, allowed one by one by their SHA-256 hash. Those hashes are taken from the
built pages, outside the part a note makes (the <article>, whose HTML htmlcheck.py has checked), and
from the part of a notebook page that nbconvert's template writes.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from .htmlcheck import NOTEBOOK_PARTS

# (directive, sources, why). 'self' is the site's own origin (on file://, the files of the copy).
DIRECTIVES = [
    ("default-src", "'self'", "anything not named below comes from the site or not at all"),
    ("script-src", "'self'", "the theme's bundle, kb.js, KaTeX, Mermaid, the search worker; inline: by hash"),
    ("script-src-attr", "'none'", "no inline event handlers"),
    ("style-src", "'self' 'unsafe-inline'",
     "Mermaid writes a <style> into each diagram and Material and KaTeX set style attributes; "
     "notebook pages carry nbconvert's <style> blocks. CSS cannot reach another origin: img-src, "
     "font-src and connect-src below keep every url() on the site"),
    ("img-src", "'self' data:", "Material's icons are data: SVGs in its CSS; notebook figures are data: PNGs"),
    ("font-src", "'self'", "KaTeX's fonts, from assets/vendor"),
    ("connect-src", "'self'", "instant navigation, the sitemap and the search index"),
    ("worker-src", "'self'", "the search worker"),
    ("object-src", "'none'", "no plugins"),
    ("base-uri", "'self'", "a <base> cannot move relative links elsewhere"),
    ("form-action", "'none'", "no form submits anywhere (the search box is handled by script)"),
]
META_START = '<meta http-equiv="Content-Security-Policy" content="'
JS_TYPES = {"", "module", "text/javascript", "application/javascript", "text/ecmascript",
            "application/ecmascript", "text/jscript", "text/livescript"}


def script_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def policy(inline_scripts: set[str], serve: bool = False) -> str:
    """The policy text. Under `mkdocs serve`, livereload's inline script (new on every request)
    cannot be hashed, so inline scripts are allowed there; the built site never has that."""
    allowed = "'unsafe-inline'" if serve else " ".join(sorted(script_hash(s) for s in inline_scripts))
    parts = []
    for name, sources, _ in DIRECTIVES:
        if name == "script-src" and allowed:
            sources = f"{sources} {allowed}"
        parts.append(f"{name} {sources}")
    return "; ".join(parts)


SERVE_POLICY = policy(set(), serve=True)


def executable_inline(scripts) -> list:
    """Scripts with their code inline and a JavaScript type (JSON and other data blocks never run)."""
    return [s for s in scripts if "src" not in s.attributes
            and (s.attributes.get("type") or "").strip().lower() in JS_TYPES]


def theme_scripts(page_html: str) -> tuple[set[str], str | None]:
    """The inline scripts of a built page outside its <article>, and the search worker's URL."""
    doc = LexborHTMLParser(page_html)
    found = {s.text(deep=True) for s in executable_inline(doc.css("script")) if not inside(s, "article")}
    config = doc.css_first("script#__config")
    worker = json.loads(config.text(deep=True)).get("search") if config is not None else None
    return found, worker


def notebook_template_scripts(content: LexborHTMLParser) -> set[str]:
    """The inline scripts nbconvert's template puts in a notebook page (not the notebook's own)."""
    own = {s.mem_id for part in content.css(NOTEBOOK_PARTS) for s in part.css("script")}
    return {s.text(deep=True) for s in executable_inline(content.css("script")) if s.mem_id not in own}


def inside(node, tag: str) -> bool:
    node = node.parent
    while node is not None:
        if node.tag == tag:
            return True
        node = node.parent
    return False


def sample_key(site_dir: Path, path: Path) -> tuple[int, bool]:
    """Pages with one key share the theme's inline scripts: they differ only by the base URL, which
    depends on the page's depth, and 404.html, which uses an absolute one."""
    rel = path.relative_to(site_dir)
    return len(rel.parts), rel.as_posix() == "404.html"


def iframe_worker_bootstraps(shim_js: str, worker_urls: set[str]) -> set[str]:
    """The inline script that the vendored iframe-worker shim writes into its iframe for each worker
    URL (offline copy only: it stands in for the Web Worker that file:// does not allow). The shim
    builds it from a template literal and two of its own functions' source text."""
    template = re.search(r"<script>(postMessage=\$\{c\};.*?)<\\/script>", shim_js)
    if not template:
        raise ValueError("iframe-worker shim: its bootstrap script was not found (was the shim updated?)")
    functions = {name: function_source(shim_js, name) for name in ("c", "d")}
    out = set()
    for url in worker_urls:
        text = template.group(1).replace("${c}", functions["c"]).replace("${d}", functions["d"])
        out.add(text.replace("${e}", url))
    return out


def function_source(js: str, name: str) -> str:
    start = js.index(f"function {name}(")
    depth, i = 0, js.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(js[i], 0)
        if depth == 0:
            return js[start:i + 1]
        i += 1


def with_meta(page_html: str, text: str) -> str:
    """The page with the policy as the first element of its <head> (re-running replaces it)."""
    meta = f'{META_START}{text}">'
    at = page_html.find(META_START)
    if at >= 0:
        end = page_html.index('">', at + len(META_START)) + 2
        return page_html[:at] + meta + page_html[end:]
    head = re.search(r"<head\b[^>]*>", page_html)
    if not head:
        raise ValueError("page has no <head>")
    return page_html[:head.end()] + meta + page_html[head.end():]


def write_policy(site_dir: Path, extra_scripts: set[str], shim: Path | None) -> str:
    """Put one policy, with the theme's inline scripts by hash, into every HTML file of the built site;
    return it. (Under serve, pages get SERVE_POLICY as they are written: vault/plugin.py.)"""
    pages = sorted(site_dir.rglob("*.html"))
    sampled: dict[tuple[int, bool], Path] = {}
    for path in pages:
        sampled.setdefault(sample_key(site_dir, path), path)
    scripts, workers = set(extra_scripts), set()
    for path in sampled.values():
        found, worker = theme_scripts(path.read_text(encoding="utf-8"))
        scripts |= found
        if worker:
            workers.add(worker)
    if shim is not None:
        scripts |= iframe_worker_bootstraps(shim.read_text(encoding="utf-8"), workers)
    text = policy(scripts)
    for path in pages:
        path.write_text(with_meta(path.read_text(encoding="utf-8"), text), encoding="utf-8")
    return text
