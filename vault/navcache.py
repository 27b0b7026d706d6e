"""Draw each top-level navigation section once per page depth, not once per page.

Material draws the whole navigation into every page. A top-level section that does not hold the
current page comes out the same on every page whose links to it are the same, and with
`navigation.sections` every such section is drawn expanded (its groups included), so drawing it
per page costs pages x pages. `overrides/partials/nav-item.html` routes Material's top-level
`render` through `memoised_nav_item`, which keeps the HTML of those sections. Anything that holds
the current page, and every single page link, is still drawn by Material's own macro.
"""
from __future__ import annotations

import posixpath

import jinja2


def page_dir(url: str) -> str:
    """The folder a page's relative links start from, as mkdocs.utils.get_relative_url sees it."""
    head, tail = posixpath.split(url)
    return head if "." in tail else url.rstrip("/")


def first_part(path: str) -> str:
    return path.split("/", 1)[0]


def memoised_nav_item():
    """A Jinja global: `vault_nav_item(render, nav_item, path, level[, parent])`, memoised."""
    drawn: dict[tuple, str] = {}
    folders: dict[int, frozenset[str]] = {}  # section -> first URL part of every page under it

    def top_folders(section) -> frozenset[str]:
        if id(section) not in folders:
            parts, stack = set(), [section]
            while stack:
                item = stack.pop()
                if item.children:
                    stack.extend(item.children)
                elif getattr(item, "url", None) is not None:
                    parts.add(first_part(page_dir(item.url)))
            folders[id(section)] = frozenset(parts)
        return folders[id(section)]

    def key(nav_item, page, path, level):
        if page is None or not nav_item.children or nav_item.active:
            return None  # a page link, or the section being read: Material draws it as it is
        here = page_dir(page.url)
        if first_part(here) in top_folders(nav_item):
            return None  # links into it could share a prefix with this page's own folder
        # A link from `here` to a page outside its top folder is "../" per folder level, then the URL.
        return id(nav_item), path, level, here.count("/") + 1 if here else 0

    @jinja2.pass_context
    def render_item(context, render, nav_item, path, level, parent=None):
        args = (nav_item, path, level) if parent is None or isinstance(parent, jinja2.Undefined) \
            else (nav_item, path, level, parent)
        k = key(nav_item, context.get("page"), path, level)
        if k is None:
            return render(*args)
        if k not in drawn:
            drawn[k] = render(*args)
        return drawn[k]

    return render_item
