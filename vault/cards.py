"""One card per question page: the question, its 30-second answer, and where it lives.

The practice page, the Anki deck, the CSV and the printable handout are all made from these, and
the answer is read from the page's own `## In 30 seconds` section, so it is never typed twice.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import markdown

from .urls import clean_dest_uri
from .vault import NOTES, Vault
from .wikilinks import WIKILINK_RE, note_name

ANSWER_HEADING = "In 30 seconds"


@dataclass
class Card:
    uri: str            # src path in docs/, e.g. classical-cv/RANSAC.md
    url: str            # site path, e.g. classical-cv/ransac/
    section: str        # folder, e.g. classical-cv
    section_title: str  # e.g. Classical Computer Vision
    name: str           # short note title, e.g. RANSAC
    question: str
    difficulty: str
    tags: list[str] = field(default_factory=list)
    answer_md: str = ""  # the 30-second answer, wikilinks turned into plain text

    @functools.cached_property  # used by the deck and by the practice page: render it once
    def answer_html(self) -> str:
        return render_answer(self.answer_md)


@functools.lru_cache(maxsize=1)
def answer_converter() -> markdown.Markdown:
    return markdown.Markdown(extensions=["pymdownx.arithmatex", "pymdownx.betterem", "tables", "sane_lists"],
                             extension_configs={"pymdownx.arithmatex": {"generic": True}})


@functools.lru_cache(maxsize=4096)  # under `make serve`, a rebuild renders only answers that changed
def render_answer(text: str) -> str:
    """HTML for an answer; math stays as \\( \\) and \\[ \\], which KaTeX and Anki's MathJax both read."""
    md = answer_converter()
    md.reset()
    return md.convert(text)


def answer_section(body: str, masked_body: str) -> str:
    """The text under `## In 30 seconds`, up to the next H2."""
    lines, masked = body.split("\n"), masked_body.split("\n")
    start = next((i for i, l in enumerate(masked) if l.strip() == f"## {ANSWER_HEADING}"), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(masked)) if masked[i].startswith("## ")), len(lines))
    return "\n".join(lines[start + 1:end]).strip()


def plain_wikilinks(text: str) -> str:
    def label(m) -> str:
        name, heading, alias = (m.group(1) or "").strip(), (m.group(2) or "").lstrip("#"), m.group(3)
        return alias or (f"{note_name(name)} › {heading}" if heading and name else heading or name)
    return WIKILINK_RE.sub(label, text)


def collect(vault: Vault) -> list[Card]:
    """Cards for every question page, in navigation order. Concept notes are not questions."""
    found = []
    for section in vault.sections:
        if section == NOTES:
            continue
        section_title = vault.title(f"{section}/index.md")
        for uri in vault.pages_in(section):
            src = vault.notes.get(uri)
            if src is None or not vault.is_question(uri) or not isinstance(src.meta.get("question"), str):
                continue
            tags = src.meta.get("tags")
            found.append(Card(
                uri=uri, url=clean_dest_uri(uri).removesuffix("index.html"), section=section,
                section_title=section_title, name=vault.title(uri), question=src.meta["question"].strip(),
                difficulty=str(src.meta.get("difficulty", "")),
                tags=[str(t) for t in tags] if isinstance(tags, list) else [],
                answer_md=plain_wikilinks(answer_section(src.body, src.masked_body)),
            ))
    return found
