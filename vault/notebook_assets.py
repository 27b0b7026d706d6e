"""A notebook page made light: only the style rules it uses, and its figures as files beside it.

nbconvert writes JupyterLab's whole stylesheet (about 590 KB) into every notebook page, and every
output figure as `<img src="data:image/png;base64,...">`: the Crops lab page was 1.1 MB of HTML that
a phone must download and parse before it paints any text. Here
- the page's <style> blocks become one, with only the rules whose classes the page's HTML or
  Material's own (md-*) classes provide: the Crops lab's 590 KB became 140 KB. It stays inline:
  Lighthouse measured 98-99 inline against 96 as a linked file, whose extra round trip held back
  the first paint;
- each PNG becomes `output-<hash>.png` beside the page, loaded lazily, with the width and height
  read from its header so that nothing shifts as it arrives.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import importlib.metadata
import posixpath
import re
import struct
import sys
from pathlib import Path

import tinycss2

from . import diskcache

STYLE_RE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S | re.I)
DATA_PNG_RE = re.compile(r'<img\b([^>]*?)\ssrc="data:image/png;base64,([A-Za-z0-9+/=\s]+)"([^>]*?)\s*/?>')
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASS_ATTR_RE = re.compile(r'\sclass="([^"]*)"')
SELECTOR_CLASS_RE = re.compile(r"\.(-?[_a-zA-Z][_a-zA-Z0-9-]*)")
# Parts of a selector whose classes are not required for it to match: attribute values and strings,
# and the arguments of :not() (a missing class satisfies it) and of :is(), :where(), :has().
NOT_REQUIRED_RE = re.compile(r"\[[^\]]*\]|\"[^\"]*\"|'[^']*'"
                             r"|:(?:not|is|where|has|-webkit-any|-moz-any)\((?:[^()]|\([^()]*\))*\)")
TINYCSS2 = f"tinycss2 {importlib.metadata.version('tinycss2')}"
THEME_CLASS = "md-"  # Material's template and scripts add these classes (a table's scroll wrapper, ...)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk, or None if `data` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def used_rules(css: str, classes: set[str]) -> str:
    """The rules of `css` that can match a page whose elements have `classes`: a rule goes when every
    selector in its list requires a class the page lacks. At-rules other than @media and @supports
    (fonts, keyframes, imports) stay."""
    def required(selector: str) -> set[str]:
        found = SELECTOR_CLASS_RE.findall(NOT_REQUIRED_RE.sub("", selector))
        return {c for c in found if not c.startswith(THEME_CLASS)}

    def keep(rules) -> list[str]:
        out = []
        for rule in rules:
            if rule.type == "qualified-rule":
                selectors = re.split(r",(?![^()]*\))", tinycss2.serialize(rule.prelude))  # not inside (...)
                if any(required(s) <= classes for s in selectors):
                    out.append(tinycss2.serialize([rule]))
            elif rule.type == "at-rule" and rule.lower_at_keyword in ("media", "supports") and rule.content:
                inner = keep(tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True))
                if inner:
                    out.append(f"@{rule.at_keyword}{tinycss2.serialize(rule.prelude)}{{{''.join(inner)}}}")
            elif rule.type == "at-rule":
                out.append(tinycss2.serialize([rule]))
        return out
    return "\n".join(keep(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)))


@functools.lru_cache(maxsize=16)  # under `make serve`, a rebuild reuses an unchanged notebook's styles
def prune_styles(html: str) -> str:
    """The <style> blocks, in their order, as one block of the rules the page uses, where the first was.
    Parsing 590 KB of CSS takes seconds, so the result is kept in .cache/ (vault/diskcache.py)."""
    key = diskcache.key(diskcache.code_version(sys.modules[__name__]), TINYCSS2, html)
    return diskcache.named("notebook-styles").through(key, lambda: _prune_styles(html))


def _prune_styles(html: str) -> str:
    blocks = STYLE_RE.findall(html)
    if not blocks:
        return html
    classes = {c for m in CLASS_ATTR_RE.finditer(html) for c in m.group(1).split()}
    style = f"<style>{used_rules(chr(10).join(blocks), classes)}</style>"
    first = STYLE_RE.search(html)
    rest = STYLE_RE.sub("", html[first.end():])
    return html[:first.start()] + style + rest


def extract_images(html: str, page_dir: Path) -> str:
    """Each embedded PNG written to `page_dir` and linked by its file name."""
    def one(m: re.Match) -> str:
        before, payload, after = m.groups()
        try:
            data = base64.b64decode(re.sub(r"\s+", "", payload), validate=True)
        except binascii.Error:
            return m.group(0)
        size = png_size(data)
        if size is None:
            return m.group(0)
        name = f"output-{digest(data)}.png"
        page_dir.mkdir(parents=True, exist_ok=True)
        (page_dir / name).write_bytes(data)
        extra = "" if re.search(r"\swidth=", before + after) else f' width="{size[0]}" height="{size[1]}"'
        return f'<img{before} src="{name}"{after}{extra} loading="lazy" decoding="async">'
    return DATA_PNG_RE.sub(one, html)


def extract(html: str, site_dir: Path, dest_uri: str) -> str:
    """A notebook page's HTML with its styles pruned and its figures moved to files of the built site."""
    return extract_images(prune_styles(html), site_dir / posixpath.dirname(dest_uri))
