"""Page HTML made friendlier to assistive technology at build time."""
from __future__ import annotations

import re

# A Markdown table whose corner cell is blank (`|   | A | B |`) gives an empty <th>: a header that
# names nothing (axe: empty-table-header). It is a plain cell.
EMPTY_HEADER_RE = re.compile(r"<th(\s[^>]*)?>\s*</th>")


def empty_headers_as_cells(html: str) -> str:
    return EMPTY_HEADER_RE.sub(lambda m: f"<td{m.group(1) or ''}></td>", html)
