"""Read one Markdown note: front matter, body, code regions and headings, with line numbers."""
from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass, field
from functools import cached_property

import markdown
import yaml
from pymdownx.slugs import slugify

# libyaml's safe loader when PyYAML was built with it: the same YAML, 7x faster on these notes.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The one slug rule for heading ids; mkdocs.yml points toc at it, so links and pages agree.
slugify_heading = slugify(case="lower")

FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*\n", re.S)
FENCE_OPEN_RE = re.compile(r"^[ \t>]*(`{3,}|~{3,})")
INLINE_CODE_RE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)
HEADING_RE = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


class FrontMatterError(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    id: str
    line: int


# Anything Python-Markdown might turn into markup, entities or symbols inside a heading.
MARKUP_RE = re.compile(r"[`*_\[\]<>&\\${}!~^=|]|\(c\)|\(r\)|\(tm\)|-->|<--|\+-|\d/\d", re.I)


def unique_id(candidate: str, taken: list[str]) -> str:
    """toc's rule for a repeated id: heading, heading_1, heading_2, ..."""
    base, n, result = candidate, 0, candidate
    while result in taken or not result:
        n += 1
        result = f"{base}_{n}"
    return result


@functools.lru_cache(maxsize=1)
def heading_converter() -> markdown.Markdown:
    """One Markdown instance, reset per note: it only reads headings, with MkDocs' id rule."""
    return markdown.Markdown(extensions=["toc", "attr_list"],
                             extension_configs={"toc": {"slugify": slugify_heading}})


def mask_code(text: str) -> str:
    """Blank out fenced blocks and inline code spans, keeping length and newlines.

    Searching the masked text finds only prose, and every match offset is also valid in `text`.
    """
    out = list(mask_fenced(text))
    for m in INLINE_CODE_RE.finditer("".join(out)):
        _blank(out, m.start(), m.end())
    return "".join(out)


def _blank(out: list[str], start: int, end: int) -> None:
    for i in range(start, end):
        if out[i] != "\n":
            out[i] = " "


def mask_fenced(text: str) -> str:
    """Blank out fenced code blocks only, keeping length and newlines (inline code stays)."""
    out = list(text)
    pos, fence = 0, None
    fence_start = 0
    for line in text.splitlines(keepends=True):
        m = FENCE_OPEN_RE.match(line)
        if fence is None and m:
            fence, fence_start = m.group(1), pos
        elif fence is not None and m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                and not line[m.end():].strip():
            _blank(out, fence_start, pos + len(line))
            fence = None
        pos += len(line)
    if fence is not None:  # an unclosed fence runs to the end, as in Python-Markdown
        _blank(out, fence_start, len(text))
    return "".join(out)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


@dataclass
class Source:
    """A note's text split into front matter and body. Line numbers are 1-based, in the file."""

    path: str  # path shown in messages, e.g. docs/classical-cv/RANSAC.md
    text: str
    meta: dict = field(default_factory=dict)
    meta_error: FrontMatterError | None = None
    body: str = ""
    body_line: int = 1  # file line on which the body starts

    @classmethod
    def parse(cls, path: str, text: str) -> "Source":
        src = cls(path=path, text=text.replace("\r\n", "\n"))
        m = FRONT_MATTER_RE.match(src.text)
        if not m:
            src.body = src.text
            return src
        src.body = src.text[m.end():]
        src.body_line = line_of(src.text, m.end())
        try:
            meta = yaml.load(m.group(1) or "", Loader=SAFE_LOADER) or {}
        except yaml.YAMLError as exc:
            # Where the broken construct starts (e.g. an unclosed '['), else where the parser stopped.
            mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
            line = 2 + (mark.line if mark else 0)
            reason = getattr(exc, "problem", None) or str(exc)
            src.meta_error = FrontMatterError(line, f"invalid YAML front matter: {reason}")
            return src
        if not isinstance(meta, dict):
            src.meta_error = FrontMatterError(2, "front matter must be a YAML mapping")
            return src
        src.meta = meta
        return src

    @cached_property
    def masked_body(self) -> str:
        return mask_code(self.body)

    def body_line_of(self, offset: int) -> int:
        """File line of an offset into the body."""
        return self.body_line + line_of(self.body, offset) - 1

    @cached_property
    def headings(self) -> list[Heading]:
        """Headings with the ids MkDocs' toc extension gives them (same slug rule, same de-duplication)."""
        found = [(m, len(m.group(1))) for m in HEADING_RE.finditer(self.masked_body)]
        if not found:
            return []
        texts = [m.group(2) for m, _ in found]
        if not any(MARKUP_RE.search(t) for t in texts):
            # Plain headings (the usual case): MkDocs' id is the slug, made unique as toc does.
            ids: list[str] = []
            for t in texts:
                ids.append(unique_id(slugify_heading(t, "-"), ids))
            return [Heading(level=level, text=t, id=i, line=self.body_line_of(m.start()))
                    for (m, level), t, i in zip(found, texts, ids)]
        md = heading_converter()
        md.reset()
        md.convert("\n\n".join(self.body[m.start():m.end()] for m, _ in found))
        tokens: list[dict] = []

        def walk(items: list[dict]) -> None:
            for item in items:
                tokens.append(item)
                walk(item["children"])

        walk(md.toc_tokens)
        return [
            Heading(level=level, text=html.unescape(tok["name"]), id=tok["id"], line=self.body_line_of(m.start()))
            for (m, level), tok in zip(found, tokens)
        ]

    @property
    def h1(self) -> Heading | None:
        return next((h for h in self.headings if h.level == 1), None)
