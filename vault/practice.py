"""What the site adds for practising: the printable handout page and the practice page's data."""
from __future__ import annotations

import json

from . import math as site_math
from .cards import Card

HANDOUT = "handout.md"
PRACTICE = "practice.md"
DOWNLOADS = "downloads"


def handout_markdown(cards: list[Card]) -> str:
    """Every question with its 30-second answer, grouped by section, as one page."""
    parts = [
        # Out of search: it repeats every 30-second answer, which would crowd out the pages themselves.
        "---", "hide:", "  - navigation", "  - toc", "search:", "  exclude: true", "---", "",
        "# Printable handout", "",
        "Every question with the answer you would give in the first 30 seconds, grouped by section. "
        "Print this page (Ctrl+P or ⌘P) or save it as PDF: the navigation and other screen-only parts are "
        "left out. Each answer links to its full page.", "",
    ]
    section = None
    for card in cards:
        if card.section != section:
            section = card.section
            parts += [f"## {card.section_title}", ""]
        parts += [f'### {card.question} {{ .kb-handout__question }}', "",
                  card.answer_md, "",
                  f"*{card.difficulty}* · [Full answer: {card.name}](<{card.uri}>)", ""]
    return "\n".join(parts)


def _ignore(tex: str, message: str) -> None:
    """An invalid formula in an answer is reported, with its line, by the question's own page."""


def practice_data(cards: list[Card], hrefs: dict[str, str]) -> str:
    """The JSON embedded in the practice page; `hrefs` maps a card's uri to its link from that page."""
    data = {"cards": [{
        "url": c.url, "href": hrefs[c.uri], "section": c.section, "section_title": c.section_title,
        "name": c.name, "question": c.question, "difficulty": c.difficulty, "tags": c.tags,
        "answer_html": site_math.render(c.answer_html, on_error=_ignore),
    } for c in cards]}
    # "</" cannot end the script element it is embedded in once escaped.
    text = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/json" id="kb-practice-data">{text}</script>'
