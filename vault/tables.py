"""Tables wrapped at build time in the scroll box Material's script would put them in.

Material 9.8's script wraps every `table:not([class])` of a page in
`div.md-typeset__scrollwrap > div.md-typeset__table` once the page has loaded. Taking a table out of
the article and putting it back restyles the whole article (its structural selectors), which on a
long page at a phone's speed costs about a tenth of a second of blocking time per load. So the
page ships with the wrapper, and the table carries the class `kb-table`, which Material's script
skips and kb.css styles as Material styles a bare table.
"""
from __future__ import annotations

import re

TABLE_TAG_RE = re.compile(r"<table\b([^>]*)>|</table\s*>", re.I)
WRAP_OPEN = '<div class="md-typeset__scrollwrap"><div class="md-typeset__table">'
WRAP_CLOSE = "</div></div>"


def wrapped_tables(html: str) -> str:
    """Each outermost table without a class attribute, wrapped and given the class kb-table."""
    out, depth, at, wrapping = [], 0, 0, False
    for m in TABLE_TAG_RE.finditer(html):
        out.append(html[at:m.start()])
        at = m.end()
        if m.group(0)[1] != "/":  # an opening tag
            if depth == 0 and not re.search(r"\bclass\s*=", m.group(1), re.I):
                out.append(f'{WRAP_OPEN}<table class="kb-table"{m.group(1)}>')
                wrapping = True
            else:
                out.append(m.group(0))
            depth += 1
        else:
            depth = max(depth - 1, 0)
            out.append(m.group(0))
            if depth == 0 and wrapping:
                out.append(WRAP_CLOSE)
                wrapping = False
    out.append(html[at:])
    return "".join(out)
