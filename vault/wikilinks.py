"""Resolve and render `[[wikilinks]]` from one index of the vault, built once per build.

The syntax is mkdocs-roamlinks-plugin's (its own regular expressions are reused), but:
- links inside fenced or inline code are left alone;
- a name resolves as Obsidian resolves it (file name, case-insensitive, or a path suffix; any file
  that is not a Markdown note, a notebook or an image say, needs its extension, as in Obsidian), and a
  name matching nothing or several files is an error, never a silent pick;
- `[[Note#Heading]]` points at the id MkDocs gives that heading, or is an error;
- the link text reads "Note › Heading", not "Note#Heading".
"""
from __future__ import annotations

import posixpath
import re
import warnings
from dataclasses import dataclass

with warnings.catch_warnings():  # roamlinks 0.3.2 touches an MkDocs API deprecated since 1.2
    warnings.simplefilter("ignore", DeprecationWarning)
    from mkdocs_roamlinks_plugin.plugin import AUTOLINK_RE, ROAMLINK_RE

from .source import Source, mask_code

WIKILINK_RE = re.compile(ROAMLINK_RE)
AUTOLINK = re.compile(AUTOLINK_RE)
NOTE_SUFFIX = ".md"  # the only files Obsidian links to without their extension


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Wikilink:
    start: int  # offsets into the note's body
    end: int
    line: int  # line in the file
    name: str
    heading: str
    alias: str
    width: str
    height: str
    embed: bool


def note_name(src_uri: str) -> str:
    """The name a note is linked by: its file name without .md (Obsidian's rule)."""
    base = posixpath.basename(src_uri)
    return base[:-3] if base.endswith(".md") else base


def find_wikilinks(src: Source) -> list[Wikilink]:
    links = []
    for m in WIKILINK_RE.finditer(src.masked_body):
        name = (m.group(1) or "").strip()
        if name.startswith(("http://", "https://")):
            continue
        links.append(Wikilink(
            start=m.start(), end=m.end(), line=src.body_line_of(m.start()),
            name=name, heading=(m.group(2) or "").lstrip("#").strip(),
            alias=(m.group(3) or "").strip(), width=m.group(4) or "", height=m.group(5) or "",
            embed=m.start() > 0 and src.body[m.start() - 1] == "!",
        ))
    return links


class LinkIndex:
    """Every file of the docs folder by the names a wikilink may use."""

    def __init__(self, src_uris: list[str]):
        self.by_name: dict[str, list[str]] = {}
        self.by_stem_path: dict[str, str] = {}
        self.others_by_stem: dict[str, list[str]] = {}
        self.all = set(src_uris)
        for uri in sorted(src_uris):
            keys = {posixpath.basename(uri).lower()}
            stem, ext = posixpath.splitext(uri)
            if ext == NOTE_SUFFIX:
                keys.add(posixpath.basename(stem).lower())
                self.by_stem_path[stem.lower()] = uri
            else:  # kept only to say what the link should have been
                self.others_by_stem.setdefault(posixpath.basename(stem).lower(), []).append(uri)
            for key in keys:
                self.by_name.setdefault(key, []).append(uri)

    def resolve(self, name: str) -> tuple[str | None, str | None]:
        """Return (src_uri, None) or (None, why it does not resolve)."""
        key = name.strip().lower()
        if key.endswith(".md"):
            key = key[:-3]
        if "/" in key:
            key = key.lstrip("./")
            hits = [uri for stem, uri in self.by_stem_path.items()
                    if stem == key or stem.endswith("/" + key)]
            hits += [uri for uri in self.by_name.get(posixpath.basename(key), [])
                     if uri.lower().endswith(key) and uri not in hits]
        else:
            hits = self.by_name.get(key, [])
        if not hits:
            files = self.others_by_stem.get(posixpath.basename(key), [])
            if files:
                named = " or ".join(f"[[{posixpath.basename(f)}]]" for f in files)
                return None, f"wikilink [[{name}]] matches no note: Obsidian links a file that is not a note " \
                             f"by its full name, {named}"
            return None, f"wikilink [[{name}]] matches no note"
        if len(hits) > 1:
            return None, f"wikilink [[{name}]] is ambiguous: " + ", ".join(hits)
        return hits[0], None


def escape_text(text: str) -> str:
    return text.replace("[", r"\[").replace("]", r"\]")


def render(src_uri: str, src: Source, links: list[Wikilink], index: LinkIndex,
           headings_of) -> tuple[str, list[Problem]]:
    """Rewrite a note's body with wikilinks as relative Markdown links.

    `headings_of(src_uri)` returns the target's headings. A link that cannot be resolved is left
    as written and reported as a problem (which fails the strict build).
    """
    problems: list[Problem] = []
    out, pos = [], 0
    here = posixpath.dirname(src_uri)
    for link in links:
        target, anchor, text = src_uri, "", link.alias
        if link.name:
            target, error = index.resolve(link.name)
            if error:
                problems.append(Problem(src.path, link.line, error))
                continue
        if link.heading:
            heading = find_heading(headings_of(target), link.heading)
            if heading is None:
                problems.append(Problem(
                    src.path, link.line,
                    f"wikilink [[{link.name}#{link.heading}]]: {note_name(target)} has no heading "
                    f"'{link.heading}'"))
                continue
            anchor = "#" + heading.id
            if not text:
                text = f"{note_name(target)} › {heading.text}" if link.name else heading.text
        text = text or link.name
        href = "" if target == src_uri and link.heading else posixpath.relpath(target, here)
        md = f"[{escape_text(text)}](<{href}{anchor}>)"
        if link.width or link.height:
            size = "; ".join(f'{k}="{v}"' for k, v in (("width", link.width), ("height", link.height)) if v)
            md += "{ " + size + " }"
        out.append(src.body[pos:link.start])
        out.append(md)
        pos = link.end
    out.append(src.body[pos:])
    body = "".join(out)
    return rewrite_autolinks(src_uri, body, index), problems


def find_heading(headings, wanted: str):
    """Match a heading the way Obsidian does: by its text, ignoring case and extra spaces.

    The last part of a nested `A#B` path is used; a heading id is accepted too.
    """
    wanted = wanted.split("#")[-1]
    norm = " ".join(wanted.split()).lower()
    for h in headings:
        if " ".join(h.text.split()).lower() == norm or h.id == wanted:
            return h
    return None


def rewrite_autolinks(src_uri: str, body: str, index: LinkIndex) -> str:
    """roamlinks' other feature: `[text](Note.md)` with a bare file name links to it anywhere."""
    here = posixpath.dirname(src_uri)
    masked = mask_code(body)
    out, pos = [], 0
    for m in AUTOLINK.finditer(masked):
        filename = m.group(3)
        if posixpath.normpath(posixpath.join(here, filename)) in index.all:
            continue  # already a correct relative link
        target, error = index.resolve(filename)
        if error:
            continue  # MkDocs' own link validation reports it
        out.append(body[pos:m.start(2)])
        out.append(posixpath.relpath(target, here) + (m.group(5) or ""))
        pos = m.end(2)
    out.append(body[pos:])
    return "".join(out)
