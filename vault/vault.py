"""The vault as a whole: every note read once, its links resolved, its sections and backlinks known.

The MkDocs plugin and the contribution checker both use this one model, so the site and the
checks cannot disagree about what a link points to.
"""
from __future__ import annotations

import functools
import posixpath
from functools import cached_property
from pathlib import Path

from .source import Heading, Source
from .wikilinks import LinkIndex, Problem, Wikilink, find_wikilinks, note_name, render

HOME = "index.md"
NOTES = "notes"  # the concept-notes section: same anatomy as questions, but not practice cards

# `make serve` builds a new Vault on every save. A note's parse and links depend only on its path
# and text, and its rendering only on those, the set of files and the headings its links point
# into, so both are kept across builds in this process (vault/incremental.py empties them).
PARSED: dict[tuple[str, str], tuple[Source, list[Wikilink]]] = {}
RENDERED: dict[tuple, tuple[str, list[Problem]]] = {}
CACHE_LIMIT = 20_000  # entries; a long session keeps every saved version of a note, so start over


def _remember(cache: dict, key, compute):
    if key not in cache:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[key] = compute()
    return cache[key]


def parse(path: str, text: str) -> tuple[Source, list[Wikilink]]:
    src = Source.parse(path, text)
    return src, find_wikilinks(src)


@functools.lru_cache(maxsize=65536)
def _relative(from_dir: str, to_uri: str) -> str:
    return posixpath.relpath(to_uri, from_dir)


class Vault:
    def __init__(self, label: str, texts: dict[str, str], other_files: list[str]):
        """`texts` maps each Markdown file's src_uri to its text; `other_files` lists the rest."""
        self.label = label  # how paths are shown in messages, e.g. "docs"
        parsed = {uri: _remember(PARSED, (f"{label}/{uri}", text), lambda: parse(f"{label}/{uri}", text))
                  for uri, text in texts.items()}
        self.notes = {uri: src for uri, (src, _) in parsed.items()}
        self.links: dict[str, list[Wikilink]] = {uri: links for uri, (_, links) in parsed.items()}
        self.index = LinkIndex(list(texts) + list(other_files))
        self._files_key = tuple(sorted(self.index.all))

    @classmethod
    def load(cls, docs_dir: Path, label: str | None = None) -> "Vault":
        texts, others = {}, []
        for path in sorted(docs_dir.rglob("*")):
            if not path.is_file() or any(p.startswith(".") for p in path.relative_to(docs_dir).parts):
                continue
            uri = path.relative_to(docs_dir).as_posix()
            if path.suffix == ".md":
                texts[uri] = path.read_text(encoding="utf-8")
            else:
                others.append(uri)
        return cls(label or docs_dir.name, texts, others)

    # --- structure -------------------------------------------------------------------------

    @cached_property
    def sections(self) -> list[str]:
        """Section folders (a top-level folder with an index.md), in the order the home page links them."""
        folders = {uri.split("/")[0] for uri in self.notes if uri.count("/") == 1 and uri.endswith("/index.md")}
        order = []
        for link in self.links.get(HOME, []):
            target = self.target(link)
            folder = target.split("/")[0] if target and target.endswith("/index.md") else None
            if folder in folders and folder not in order:
                order.append(folder)
        return order + sorted(folders - set(order))

    def section_of(self, uri: str) -> str | None:
        folder = uri.split("/")[0] if "/" in uri else None
        return folder if folder in self.sections else None

    def is_question(self, uri: str) -> bool:
        """Question pages and concept notes: every Markdown page in a section folder but its index."""
        return uri.endswith(".md") and uri.count("/") == 1 and self.section_of(uri) is not None \
            and not uri.endswith("/index.md")

    def listed_in_index(self, section: str) -> list[str]:
        """Pages the section's index.md links to, in order."""
        listed = []
        for link in self.links.get(f"{section}/index.md", []):
            target = self.target(link)
            if target and target.startswith(section + "/") and target not in listed:
                listed.append(target)
        return listed

    def pages_in(self, section: str) -> list[str]:
        """The section's pages (Markdown and notebooks): those its index lists, in that order, then the rest."""
        prefix = section + "/"
        members = sorted(u for u in self.index.all if u.startswith(prefix) and u.count("/") == 1
                         and u.endswith((".md", ".ipynb")) and not u.endswith("/index.md"))
        listed = [u for u in self.listed_in_index(section) if u in members]
        return listed + [u for u in members if u not in listed]

    def title(self, uri: str) -> str:
        """Short title used in navigation and backlinks: the note name, or the H1 of a section index
        or a top-level page."""
        src = self.notes.get(uri)
        if (uri.endswith("index.md") or "/" not in uri) and src and src.h1:
            return src.h1.text
        name = note_name(uri)
        return name[:-6] if name.endswith(".ipynb") else name

    # --- links -----------------------------------------------------------------------------

    def target(self, link: Wikilink) -> str | None:
        """The file a wikilink points to, or None (same-page heading links and broken links)."""
        return self.index.resolve(link.name)[0] if link.name else None

    def headings_of(self, uri: str) -> list[Heading]:
        src = self.notes.get(uri)
        return src.headings if src else []

    @cached_property
    def rendered(self) -> dict[str, tuple[str, list[Problem]]]:
        return {uri: _remember(RENDERED, self._render_key(uri),
                               lambda: render(uri, src, self.links[uri], self.index, self.headings_of))
                for uri, src in self.notes.items()}

    def _render_key(self, uri: str) -> tuple:
        """Everything render() reads: the note, the files links resolve against, the target headings."""
        targets = {self.target(link) or uri for link in self.links[uri] if link.heading}
        headings = tuple((t, tuple((h.text, h.id) for h in self.headings_of(t))) for t in sorted(targets))
        return uri, self.notes[uri].path, self.notes[uri].text, self._files_key, headings

    def link_problems(self) -> list[Problem]:
        return [p for _, problems in self.rendered.values() for p in problems]

    @cached_property
    def backlinks(self) -> dict[str, list[str]]:
        """Target -> the notes linking to it. Home and section index pages are tables of contents,
        not references, so they are left out."""
        found: dict[str, list[str]] = {}
        for uri, links in self.links.items():
            if uri == HOME or uri.endswith("/index.md"):
                continue
            for link in links:
                target = self.target(link)
                if target and target != uri and uri not in found.setdefault(target, []):
                    found[target].append(uri)
        return found

    def relative(self, from_uri: str, to_uri: str) -> str:
        return _relative(posixpath.dirname(from_uri), to_uri)
