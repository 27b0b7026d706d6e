"""Clean, stable URLs: `classical-cv/RANSAC.md` is served at `classical-cv/ransac/`."""
from __future__ import annotations

import posixpath
import re


def slug(name: str) -> str:
    """Lowercase; every run of characters other than letters and digits becomes one hyphen."""
    return re.sub(r"[^\w]+|_", "-", name.lower()).strip("-")


def clean_dest_uri(src_uri: str, use_directory_urls: bool = True) -> str:
    folder, filename = posixpath.split(src_uri)
    stem = posixpath.splitext(filename)[0]
    folder = "/".join(slug(part) for part in folder.split("/")) if folder else ""
    if stem in ("index", "README"):
        return posixpath.join(folder, "index.html")
    if use_directory_urls:
        return posixpath.join(folder, slug(stem), "index.html")
    return posixpath.join(folder, slug(stem) + ".html")
