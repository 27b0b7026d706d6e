"""Draw the navigation's sections once and reuse them, not once per page.

Material draws the whole navigation into every page. A top-level section that does not hold the
current page comes out the same on every page whose links to it are the same, and with
`navigation.sections` every such section is drawn expanded (its groups included), so drawing it
per page costs pages x pages. `overrides/partials/nav-item.html` routes Material's top-level
`render` through `memoised_nav_item`, which keeps the HTML of those sections.

The section that holds the current page is drawn by Material once per group of pages (the page's
parent in the navigation) and the folder its links start from. Its siblings' pages then reuse that
HTML with two page links swapped, each drawn by Material's own macro: the first page's link, which
Material drew as the current one, and the sibling's own link, drawn as current instead. A section's
index page (drawn as the section's own link, not as one of its pages) and a link that is not found
exactly once are not swapped: those pages are drawn by Material.
"""
from __future__ import annotations

import posixpath
from collections import Counter

import jinja2


def page_dir(url: str) -> str:
    """The folder a page's relative links start from, as mkdocs.utils.get_relative_url sees it."""
    head, tail = posixpath.split(url)
    return head if "." in tail else url.rstrip("/")


def first_part(path: str) -> str:
    return path.split("/", 1)[0]


CURRENT = "\x00vault-nav-current-page\x00"  # stands for the current page's link in a kept section


def pages_under(section) -> list:
    pages, stack = [], [section]
    while stack:
        item = stack.pop()
        if item.children:
            stack.extend(item.children)
        elif getattr(item, "url", None) is not None:
            pages.append(item)
    return pages


def memoised_nav_item():
    """A Jinja global: `vault_nav_item(render, nav_item, path, level[, parent])`, memoised.
    Its `reused` counter says how often each kind of kept HTML served a page."""
    drawn: dict[tuple, str] = {}
    folders: dict[int, frozenset[str]] = {}  # section -> first URL part of every page under it
    below: dict[int, Counter] = {}  # section -> how many of its pages' folders are at or under each folder
    current: dict[tuple, tuple | None] = {}  # (section, ..., group, link base) -> (HTML, its page, sibling links)
    reused: Counter = Counter()

    def top_folders(section) -> frozenset[str]:
        if id(section) not in folders:
            folders[id(section)] = frozenset(first_part(page_dir(p.url)) for p in pages_under(section))
        return folders[id(section)]

    def key(nav_item, page, path, level):
        if page is None or not nav_item.children or nav_item.active:
            return None  # a page link, or the section being read: Material draws it as it is
        here = page_dir(page.url)
        if first_part(here) in top_folders(nav_item):
            return None  # links into it could share a prefix with this page's own folder
        # A link from `here` to a page outside its top folder is "../" per folder level, then the URL.
        return id(nav_item), path, level, here.count("/") + 1 if here else 0

    def link_base(section, page) -> tuple:
        """Pages of `section` with the same base get the same relative links to its other pages."""
        if id(section) not in below:
            counts = Counter()
            for item in pages_under(section):
                folder = page_dir(item.url)
                while folder:
                    counts[folder] += 1
                    folder = posixpath.dirname(folder)
            below[id(section)] = counts
        here = page_dir(page.url)
        if here and below[id(section)][here] == 1:  # only this page's folder: links start with "../"
            return "parent", posixpath.dirname(here)
        return "same", here

    def current_key(nav_item, page, path, level):
        if page is None or not nav_item.children or not nav_item.active or page.parent is None \
                or page.children or page.is_index:
            return None
        return id(nav_item), path, level, id(page.parent), link_base(nav_item, page)

    def kept_section(html, render, page) -> tuple | None:
        """A section drawn for `page`, with the sibling links that can be swapped into it exactly;
        None if the page's own link cannot."""
        mine = render(page, "", 0)  # a page link's HTML does not depend on its path or level
        if html.count(mine) != 1:
            return None
        siblings = {id(item): render(item, "", 0) for item in page.parent.children
                    if not item.children and item is not page}
        swappable = {k: link for k, link in siblings.items() if html.count(link) == 1}  # not the index's
        return html.replace(mine, CURRENT), page, swappable

    @jinja2.pass_context
    def render_item(context, render, nav_item, path, level, parent=None):
        args = (nav_item, path, level) if parent is None or isinstance(parent, jinja2.Undefined) \
            else (nav_item, path, level, parent)
        page = context.get("page")
        k = current_key(nav_item, page, path, level)
        if k is not None:
            kept = current.get(k)
            if kept is not None and id(page) in kept[2]:
                html, first, siblings = kept
                reused["current section"] += 1
                return html.replace(siblings[id(page)], render(page, "", 0), 1) \
                           .replace(CURRENT, render(first, "", 0), 1)
            html = render(*args)
            if k not in current:  # tried once per key
                current[k] = kept_section(html, render, page)
            return html
        k = key(nav_item, page, path, level)
        if k is None:
            return render(*args)
        if k not in drawn:
            drawn[k] = render(*args)
        else:
            reused["other section"] += 1
        return drawn[k]

    render_item.reused = reused
    return render_item
