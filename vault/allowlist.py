"""The allow-list on the HTML a note may put in front of readers: elements, attributes, URL schemes.

The HTML is parsed by lexbor (through selectolax), a C implementation of the WHATWG HTML parser,
so it is read exactly as the browser reads it: `<svg/onload=…>` is an <svg> with an onload
attribute, `java&#09;script:` is a URL with a tab in its scheme. Then every element and attribute
is looked up in the lists below; anything not listed is a finding. The lists are what the site's
Markdown extensions produce, and nothing that runs script, sends the reader elsewhere by itself, or
makes the browser fetch from another origin:
- no <script>, <style>, <iframe>, <object>, <embed>, <form>, <meta>, <link>, <base>, no SVG or
  MathML inline, no <input> but the checkboxes and radio buttons of task lists and content tabs;
- no event handler, nor any attribute not listed (so no srcset, ping, formaction), and no style
  but the column alignment the tables extension writes;
- links go anywhere by http(s) or mailto, or within the site; what the browser fetches by itself
  (img src) must be a relative URL: it comes from the site. Notebook outputs may hold data: images.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

TAGS = {
    # text and structure (Python-Markdown, admonitions, details, footnotes, def_list, tables)
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "div", "span",
    "ul", "ol", "li", "dl", "dt", "dd", "details", "summary", "figure", "figcaption",
    "table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td",
    # inline (betterem, caret, tilde, mark, keys, abbr, smartsymbols, highlight)
    "a", "img", "em", "strong", "b", "i", "u", "s", "del", "ins", "sub", "sup", "small", "mark",
    "abbr", "kbd", "samp", "var", "q", "cite", "dfn", "time", "code", "pre",
    # task lists (a disabled checkbox) and content tabs (radio buttons with labels)
    "input", "label",
}
GLOBAL_ATTRIBUTES = {"class", "id", "title", "lang", "dir"}
ANY = None  # any value
ALIGN = {"text-align: left;", "text-align: center;", "text-align: right;"}
ATTRIBUTES: dict[str, dict[str, set[str] | None]] = {
    "a": {"href": ANY, "name": ANY},  # name: pymdownx.highlight's line anchors
    "img": {"src": ANY, "alt": ANY, "width": ANY, "height": ANY, "loading": {"lazy", "eager"}},
    "ol": {"start": ANY, "type": ANY}, "li": {"value": ANY},
    "details": {"open": ANY},
    "div": {"data-tabs": ANY},  # pymdownx.tabbed
    "label": {"for": ANY},
    "col": {"span": ANY}, "colgroup": {"span": ANY}, "time": {"datetime": ANY},
    # The tables extension aligns a column with exactly these style attributes.
    "th": {"style": ALIGN, "colspan": ANY, "rowspan": ANY},
    "td": {"style": ALIGN, "colspan": ANY, "rowspan": ANY},
    "input": {"type": {"checkbox", "radio"}, "checked": ANY, "disabled": ANY, "name": ANY},
}
LINK_SCHEMES = {"http", "https", "mailto"}
NOTEBOOK_IMAGE_SCHEMES = {"data"}  # a notebook's figures are embedded in it as data: PNGs
SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
C0_AND_SPACE = "".join(chr(c) for c in range(0x21))


@dataclass(frozen=True)
class Finding:
    message: str
    tag: str
    attributes: dict  # the offending element's attributes, to find it in the note


def url_scheme(value: str) -> tuple[str | None, str]:
    """The scheme a browser sees in an attribute's URL (lowercase, or None for a relative URL),
    and the URL as it parses it: the URL standard strips leading and trailing C0 controls and
    spaces, removes tabs and newlines anywhere, and reads a backslash as a slash."""
    url = value.strip(C0_AND_SPACE).replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    m = SCHEME_RE.match(url)
    return (m.group(1).lower() if m else None), url


def url_problem(tag: str, attr: str, value: str, image_schemes: set[str]) -> str | None:
    scheme, url = url_scheme(value)
    if tag == "a" and attr == "href":
        return None if scheme is None or scheme in LINK_SCHEMES else f"link scheme '{scheme}:'"
    if tag == "img" and attr == "src":
        if scheme is None and not url.startswith("//"):
            return None
        if scheme in image_schemes:
            return None
        return "image from another origin: commit the file under docs/assets/ and link it relatively"
    return None


def parse(html: str) -> LexborHTMLParser:
    """`html` as the browser parses it in the page's body, with scripting on (as in the browser:
    it changes how <noscript> is read). A <body> or <html> tag in it adds its attributes to the
    page's own <body> or <html>: those are kept, to be checked too."""
    return LexborHTMLParser("<!DOCTYPE html><body>" + html, scripting=True)


def check(html: str, notebook: bool = False) -> list[Finding]:
    """Every element, attribute or URL in the fragment `html` that the allow-list does not allow."""
    tree = parse(html)
    found = [Finding(f"attribute '{name}' on <{node.tag}> is not allowed", node.tag, dict(node.attributes))
             for node in (tree.root, tree.body) for name in node.attributes]
    return found + check_tree(tree.body, notebook)


def check_tree(root: LexborNode, notebook: bool = False) -> list[Finding]:
    """The same, for the descendants of an already parsed node."""
    found: list[Finding] = []
    image_schemes = NOTEBOOK_IMAGE_SCHEMES if notebook else set()
    for child in root.iter(include_text=False):
        check_element(child, image_schemes, found)
    return found


def check_element(node: LexborNode, image_schemes: set[str], found: list[Finding]) -> None:
    tag = node.tag or ""
    if tag.startswith("-") or tag.startswith("_"):  # text, comment
        return
    attributes = dict(node.attributes)
    if tag not in TAGS:
        found.append(Finding(f"element <{tag}> is not allowed", tag, attributes))
        return  # nothing inside it reaches the reader either; one finding is enough
    rules = ATTRIBUTES.get(tag, {})
    for name, value in attributes.items():
        value = value or ""
        if name in GLOBAL_ATTRIBUTES:
            continue
        if name not in rules:
            found.append(Finding(f"attribute '{name}' is not allowed on <{tag}>", tag, attributes))
            continue
        allowed = rules[name]
        if allowed is not ANY and value.strip() not in allowed:
            found.append(Finding(f"<{tag} {name}=\"{value}\"> is not allowed (allowed: "
                                 f"{', '.join(sorted(allowed))})", tag, attributes))
            continue
        problem = url_problem(tag, name, value, image_schemes)
        if problem:
            found.append(Finding(f"<{tag} {name}>: {problem}", tag, attributes))
    for child in node.iter(include_text=False):
        check_element(child, image_schemes, found)


def is_plain_text(value: str) -> bool:
    """True if `value`, printed into a page unescaped (as the theme prints front matter), makes
    no element, comment or entity, and cannot end an attribute."""
    body = parse(value).body
    return all((child.tag or "") == "-text" for child in body.iter(include_text=True)) \
        and "&" not in value and '"' not in value
