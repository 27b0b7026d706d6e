"""The built-HTML check: the HTML each note became, held against the allow-list (allowlist.py).

It runs inside the build, on the HTML that Markdown (or, for a notebook, nbconvert) made from the
note, before the theme wraps it in its own markup. So whatever way a note produced an element
(raw HTML, a Markdown link or image, an attr_list attribute) it is judged as the browser will see
it. Each finding is reported at the line of the note that holds it: the first line, outside code,
showing the offending URL or attribute value, else the tag.
"""
from __future__ import annotations

import functools
import html
import json

from selectolax.lexbor import LexborHTMLParser

from . import allowlist
from .source import mask_code
from .wikilinks import Problem

# Where a notebook's own content sits in nbconvert's page: its Markdown cells and its outputs.
# The rest (prompts, the copy button, code cells highlighted by Pygments) is the template's.
NOTEBOOK_PARTS = ".jp-RenderedMarkdown, .jp-OutputArea-output"


@functools.lru_cache(maxsize=1024)  # under `make serve`, a rebuild re-checks only pages that changed
def check_page(html: str, path: str, source: str) -> tuple[Problem, ...]:
    """Problems in the HTML of the Markdown note at `path` (e.g. docs/notes/ResNet.md)."""
    return tuple(located(allowlist.check(html), path, mask_code(source).split("\n"), notebook=False))


def check_notebook(content: LexborHTMLParser, path: str, source: str) -> list[Problem]:
    """Problems in a notebook page's Markdown cells and outputs; `content` is the parsed page body."""
    found = [f for part in content.css(NOTEBOOK_PARTS) for f in allowlist.check_tree(part, notebook=True)]
    return located(found, path, source.split("\n"), notebook=True)


def located(found: list[allowlist.Finding], path: str, lines: list[str], notebook: bool) -> list[Problem]:
    taken: set[int] = set()  # the same tag written twice: the second finding goes to the second line
    problems = []
    for f in found:
        line = locate(lines, f, notebook, taken)
        taken.add(line)
        problems.append(Problem(path, line, f"HTML: {f.message}"))
    return problems


def needles(finding: allowlist.Finding, notebook: bool) -> list[str]:
    """Strings that find the offending element in the note, most telling first."""
    values = sorted((v for v in finding.attributes.values() if v and len(v) > 2), key=len, reverse=True)
    found = values + [f"<{finding.tag}"]
    if notebook:  # in the .ipynb file, HTML sits in JSON strings
        found = [json.dumps(s)[1:-1] for s in found]
    return found


def locate(lines: list[str], finding: allowlist.Finding, notebook: bool, taken: set[int]) -> int:
    """The line showing the finding; 1 when nothing matches (the message still says what)."""
    for needle in needles(finding, notebook):
        low = needle.lower()
        hits = [n for n, line in enumerate(lines, 1) if low in line.lower()]
        if hits:
            return next((n for n in hits if n not in taken), hits[0])
    return 1


def withheld(problems: list[Problem] | tuple[Problem, ...]) -> str:
    """What a page with findings shows instead of its content, so nothing unsafe is ever written to
    the site, even by a build whose failure is ignored (or under `mkdocs serve`)."""
    items = "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in problems)
    return (f'<div class="admonition failure"><p class="admonition-title">This page is withheld</p>'
            f"<p>Its HTML has parts the site does not allow (see CONTRIBUTING.md):</p><ul>{items}</ul></div>")
