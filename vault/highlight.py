"""Highlighted code kept across builds (vault/diskcache.py).

Pygments is about a quarter of a cold build of this site: 450 code blocks, most of them snippets
that rarely change. pymdownx.highlight's `Highlight.highlight` turns a block's source, language and
options into HTML, depending on nothing else but its settings and the versions of
pymdown-extensions and Pygments, so its output is kept under a hash of all of those. Written for
pymdown-extensions 13.1.2 (constraints.txt pins it); the vault plugin installs it for its builds.
"""
from __future__ import annotations

import importlib.metadata

from pymdownx.highlight import Highlight

from . import diskcache

_original = Highlight.highlight
VERSIONS = " ".join(f"{p} {importlib.metadata.version(p)}" for p in ("pymdown-extensions", "Pygments"))
NOT_SETTINGS = {"md", "ext", "config"}  # the Markdown instance and the extension: objects, not settings


def _highlight(self: Highlight, src, language, *args, **kwargs):
    settings = repr(sorted((k, v) for k, v in vars(self).items() if k not in NOT_SETTINGS))
    call = repr((src, language, args, sorted(kwargs.items())))
    if " at 0x" in settings + call:  # an object without a stable text form: no safe key
        return _original(self, src, language, *args, **kwargs)
    cache, key = diskcache.named("highlight"), diskcache.key(VERSIONS, settings, call)
    html = cache.get(key)
    if html is None:
        html = _original(self, src, language, *args, **kwargs)
        if isinstance(html, str):  # inline code comes back as an element, and is cheap anyway
            cache.put(key, html)
    return html


def install() -> None:
    Highlight.highlight = _highlight


def uninstall() -> None:
    Highlight.highlight = _original
