"""Shape Material's search index: aliases as their own heavily weighted field, code in a light one.

Material indexes each heading section as one document (title + text). After the search plugin has
written search/search_index.json, this takes every <pre> block out of `text` and keeps only its
distinct identifiers (function, class and API names) in `code`, so code can still be found but
weighs little and does not bloat the index; and it adds a page's front-matter aliases to its first
document as `aliases`. The weights of those fields are set in mkdocs.yml (plugins: search: fields:).
Before that, `plain_code_blocks` is what the search parser is given to read: the page with its code
blocks as plain text, which indexes the same for a fraction of the parsing.
"""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

PRE_RE = re.compile(r"<pre\b.*?</pre>", re.S)
TAG_RE = re.compile(r"<[^>]+>")
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def identifiers(html: str) -> str:
    """Distinct names of three or more characters, in order of first appearance."""
    text = unescape(TAG_RE.sub(" ", html))
    names = dict.fromkeys(n for n in IDENTIFIER_RE.findall(text) if len(n) >= 3)
    return " ".join(names)


def plain_code_blocks(html: str) -> str:
    """The page as Material's search parser should read it: each <pre> block as plain text.

    Pygments wraps every token in a <span> and every line in an anchor; parsing those tags is most
    of what indexing a code-heavy page costs, and refine() keeps only the block's identifiers anyway.
    """
    return PRE_RE.sub(lambda m: f"<pre><code>{TAG_RE.sub('', m.group(0))}</code></pre>", html)


def refine(index_file: Path, aliases: dict[str, list[str]]) -> None:
    """`aliases` maps a page URL (as in the index's `location`) to its aliases."""
    data = json.loads(index_file.read_text(encoding="utf-8"))
    for doc in data["docs"]:
        blocks = PRE_RE.findall(doc.get("text", ""))
        if blocks:
            doc["text"] = PRE_RE.sub(" ", doc["text"])
            doc["code"] = identifiers(" ".join(blocks))
        if doc["location"] in aliases:
            doc["aliases"] = " ".join(aliases[doc["location"]])
    index_file.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
