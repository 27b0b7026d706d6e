"""Shape the search index: aliases as their own heavily weighted field, code in a light one, and the
index the site's own search worker reads (docs/assets/javascripts/search-worker.js).

Material indexes each heading section as one document (title + text). After the search plugin has
written search/search_index.json, this takes every <pre> block out of `text` and keeps only its
distinct identifiers (function, class and API names) in `code`, so code can still be found but
weighs little and does not bloat the index; and it adds a page's front-matter aliases to its first
document as `aliases`. The weights of those fields are set in mkdocs.yml (plugins: search: fields:).
Before that, `plain_code_blocks` is what the search parser is given to read: the page with its code
blocks as plain text, which indexes the same for a fraction of the parsing.

Material's search_index.json is fetched by every page on load. So `reader_index` moves the documents
into search/kb_index.js, which the worker loads only when a reader first searches (as a script, so
that it also loads from file:// in the offline copy), and leaves Material only the configuration.
Each page there carries its note name, question, aliases and topic tags (not the section or
difficulty tags: those words would match whole sections); each section its heading, plain text
(formulas already read as Unicode text) and code identifiers. "Linked from" lists other pages'
titles, not this page's content, and is left out.
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


def refine(index_file: Path, aliases: dict[str, list[str]], names: dict[str, str] | None = None) -> None:
    """`aliases` maps a page URL (as in the index's `location`) to its aliases, `names` to its note name."""
    data = json.loads(index_file.read_text(encoding="utf-8"))
    for doc in data["docs"]:
        blocks = PRE_RE.findall(doc.get("text", ""))
        if blocks:
            doc["text"] = PRE_RE.sub(" ", doc["text"])
            doc["code"] = identifiers(" ".join(blocks))
        if doc["location"] in aliases:
            doc["aliases"] = " ".join(aliases[doc["location"]])
    reader = reader_index(data, aliases, names or {})
    (index_file.parent / READER_INDEX).write_text(
        "self.kbSearchIndex = " + json.dumps(reader, ensure_ascii=False, separators=(",", ":")) + ";\n",
        encoding="utf-8")
    data["docs"] = []
    index_file.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


READER_INDEX = "kb_index.js"
SKIPPED_SECTIONS = ("#linked-from",)


def plain(html: str) -> str:
    return " ".join(unescape(TAG_RE.sub(" ", html)).split())


def reader_index(data: dict, aliases: dict[str, list[str]], names: dict[str, str]) -> dict:
    """{"pages": [{l, n, t, a, g}], "docs": [{p, l, h, x, c}]}: location, name, title, aliases, tags;
    page number, location, heading, text, code."""
    pages: list[dict] = []
    docs: list[dict] = []
    number: dict[str, int] = {}
    for doc in data["docs"]:
        location = doc["location"]
        page_url = location.split("#")[0]
        if location.endswith(SKIPPED_SECTIONS):
            continue
        if page_url not in number:
            section = page_url.split("/")[0]
            tags = [t for t in doc.get("tags", []) if t != section and not t.startswith("difficulty")]
            number[page_url] = len(pages)
            pages.append({"l": page_url, "n": names.get(page_url, ""),
                          "t": plain(doc["title"]) if "#" not in location else "",
                          "a": aliases.get(page_url, []), "g": " ".join(tags).replace("-", " ")})
        entry = {"p": number[page_url], "l": location, "h": plain(doc["title"]) if "#" in location else "",
                 "x": plain(doc.get("text", ""))}
        if doc.get("code"):
            entry["c"] = doc["code"]
        docs.append(entry)
    return {"pages": pages, "docs": docs}
