"""MkDocs plugin: wikilinks, clean URLs, navigation, aliases, difficulty and backlinks for the vault.

It replaces mkdocs-roamlinks-plugin's matching (see wikilinks.py) and does all its work from one
index built in `on_files`, so a build is linear in the number of notes.
"""
from __future__ import annotations

import functools
import html
import logging
import os
import posixpath
import re
import secrets
from pathlib import Path

import jinja2
import material.templates
from mkdocs.plugins import BasePlugin, CombinedEvent, event_priority
from mkdocs.structure.files import File, Files
from mkdocs.utils import get_relative_url

from . import anki, csp, highlight, htmlcheck, notebook_assets, practice
from . import math as site_math
from .a11y import empty_headers_as_cells
from .cards import collect as collect_cards
from .navcache import memoised_nav_item
from .search import plain_code_blocks
from .search import refine as refine_search_index
from .source import Source
from .tables import wrapped_tables
from .urls import clean_dest_uri
from .vault import HOME, Vault
from .wikilinks import find_wikilinks, render

log = logging.getLogger("mkdocs.plugins.vault")
# Material draws every item of the current top-level section into each page. Past this many pages a
# section is split into groups, and navigation.prune then draws the current group's pages and one
# link for each other group, instead of every page of the section on every page of it. (Sections
# that do not hold the page are drawn once and reused: navcache.py.)
NAV_GROUP_SIZE = 40
H1_RE = re.compile(r"^# .*$", re.M)
OFFLINE_SHIM = "assets/vendor/iframe-worker/shim.js"
# Where a page's meta line and "Linked from" list go. Both are written as HTML after Markdown ran,
# since Markdown would only parse them back out (at 1,000 notes the list alone cost ~5 s of a build).
# The nonce is one value per process, so that under `make serve` an unchanged page's Markdown stays
# the same, and no note can write a mark by hand.
_NONCE = secrets.token_hex(8)
META_MARK = f"<!-- vault-meta-{_NONCE} -->"
BACKLINKS_MARK = f"<!-- vault-linked-from-{_NONCE} -->"


class VaultPlugin(BasePlugin):
    vault: Vault
    serving = False

    def on_startup(self, *, command, dirty):
        self.serving = command == "serve"  # livereload's inline script needs a looser policy there

    def on_config(self, config):
        highlight.install()  # highlighted code from .cache/ for this build (undone in post_build)
        # Material's offline plugin adds iframe-worker from a CDN unless a polyfill named like it is
        # already listed: list the vendored copy. (Runs first: vault comes before offline in mkdocs.yml.)
        offline = config["plugins"].get("material/offline") or config["plugins"].get("offline")
        if offline is not None and offline.config.enabled:
            config["extra"]["polyfills"] = [OFFLINE_SHIM, *config["extra"].get("polyfills", [])]
        return config

    def on_files(self, files: Files, config):
        docs_dir = os.path.normpath(config["docs_dir"])
        ours = [f for f in files if f.src_dir and os.path.normpath(f.src_dir) == docs_dir]
        texts = {f.src_uri: f.content_string for f in ours if f.src_uri.endswith(".md")}
        others = [f.src_uri for f in ours if not f.src_uri.endswith(".md")]
        self.vault = Vault(posixpath.basename(docs_dir), texts, others)
        self.files = files
        for problem in self.vault.link_problems():
            log.warning(str(problem))
        for f in ours:
            if f.is_documentation_page():
                f.dest_uri = clean_dest_uri(f.src_uri, config["use_directory_urls"])
                for cached in ("url", "abs_dest_path"):
                    f.__dict__.pop(cached, None)
        self.cards = collect_cards(self.vault)
        site_url = config["site_url"] or ""
        for src_uri, content in (
            (practice.HANDOUT, practice.handout_markdown(self.cards)),
            (f"{practice.DOWNLOADS}/{anki.DECK_FILE}", anki.deck_bytes(self.cards, site_url)),
            (f"{practice.DOWNLOADS}/{anki.CSV_FILE}", anki.csv_text(self.cards, site_url)),
        ):
            generated = File.generated(config, src_uri, content=content)
            if generated.is_documentation_page():
                generated.dest_uri = clean_dest_uri(src_uri, config["use_directory_urls"])
            files.append(generated)
        config["nav"] = self.navigation()
        self.aliases: dict[str, list[str]] = {}
        self.names: dict[str, str] = {}  # page URL -> note name, for search
        self.template_scripts: set[str] = set()
        return files

    def navigation(self) -> list:
        vault = self.vault

        def title(uri: str) -> str:  # Material prints a navigation title as HTML
            return html.escape(vault.title(uri), quote=False)

        nav: list = [{"Home": HOME}]
        for section in vault.sections:
            index = f"{section}/index.md"
            pages = [{title(uri): uri} for uri in vault.pages_in(section)]
            nav.append({title(index): [index] + group(pages)})
        for uri in sorted(vault.notes):
            if "/" not in uri and uri != HOME:
                nav.append({title(uri): uri})
        nav.append({"Printable handout": practice.HANDOUT})
        return nav

    def on_env(self, env, config, files):
        # overrides/partials/nav-item.html wraps Material's own template, reached under "material/".
        originals = jinja2.FileSystemLoader(os.path.dirname(material.templates.__file__))
        env.loader = jinja2.ChoiceLoader([env.loader, jinja2.PrefixLoader({"material": originals})])
        env.globals["vault_nav_item"] = memoised_nav_item()
        return env

    def on_page_markdown(self, markdown: str, page, config, files):
        uri = page.file.src_uri
        difficulty = page.meta.get("difficulty")
        if isinstance(difficulty, str) and isinstance(page.meta.get("tags"), list):
            # The tags index then lists questions by difficulty as well as by topic.
            page.meta["tags"] = [*page.meta["tags"], f"difficulty: {difficulty}"]
        aliases = page.meta.get("aliases")
        if isinstance(aliases, list) and aliases:
            self.aliases[page.url] = [str(a) for a in aliases]
        note = self.vault.notes.get(uri)
        if note is not None:
            self.names[page.url] = self.vault.title(uri)
        if note is not None and markdown.strip() == note.body.strip():
            markdown = self.vault.rendered[uri][0]  # rendered once in on_files, with the problems
        else:  # another plugin changed the text (or it is generated): render what MkDocs gave us
            src = Source(path=uri, text=markdown, body=markdown)
            markdown, _ = render(uri, src, find_wikilinks(src), self.vault.index, self.vault.headings_of)
        if self.meta_line(page.meta):
            m = H1_RE.search(markdown)
            at = m.end() if m else 0
            markdown = f"{markdown[:at]}\n\n{META_MARK}\n\n{markdown[at:].lstrip(chr(10))}"
        if self.vault.backlinks.get(uri) and uri != HOME:
            markdown = f"{markdown.rstrip()}\n\n## Linked from {{ #linked-from }}\n\n{BACKLINKS_MARK}\n"
        return markdown

    # Material's search plugin reads page.content in its on_page_context (priority 0). Around it, the
    # page shows it code blocks as plain text, which is far cheaper to parse and indexes the same, and
    # math as readable text; then the page gets its math typeset by KaTeX (vault/math.py).
    @event_priority(100)
    def _content_for_search(self, context, page, config, nav):
        self._rendered_content = page.content
        page.content = searchable(page.content or "")
        return context

    @event_priority(-100)
    def _content_for_template(self, context, page, config, nav):
        page.content, errors = typeset_page(self._rendered_content or "")
        for tex, message in errors:
            math_error(page, tex, message)
        return context

    on_page_context = CombinedEvent(_content_for_search, _content_for_template)

    # First of all on_page_content handlers: the HTML exactly as Markdown (or nbconvert) made it.
    @event_priority(100)
    def _check_html(self, html_text: str, page, config, files):
        path = f"{self.vault.label}/{page.file.src_uri}"
        source = self.vault.notes[page.file.src_uri].text if page.file.src_uri in self.vault.notes \
            else (Path(page.file.abs_src_path).read_text(encoding="utf-8") if page.file.abs_src_path else "")
        if page.file.src_uri.endswith(".ipynb"):
            content = htmlcheck.LexborHTMLParser(html_text)
            problems = htmlcheck.check_notebook(content, path, source)
            self.template_scripts |= csp.notebook_template_scripts(content)
        else:
            problems = htmlcheck.check_page(html_text, path, source)
        for problem in problems:
            log.warning(str(problem))
        return htmlcheck.withheld(problems) if problems else html_text

    def _meta_and_backlinks(self, html_text: str, page, config, files):
        """The meta line and the "Linked from" list, where on_page_markdown left their marks."""
        if META_MARK in html_text:
            html_text = html_text.replace(META_MARK, self.meta_line(page.meta), 1)
        before, mark, after = html_text.rpartition(BACKLINKS_MARK)
        if not mark:
            return html_text
        items = "\n".join(
            f'<li><a href="{html.escape(get_relative_url(files.get_file_from_path(b).url, page.url))}">'
            f"{html.escape(self.vault.title(b), quote=False)}</a></li>"
            for b in self.vault.backlinks[page.file.src_uri])
        return f"{before}<ul>\n{items}\n</ul>{after}"

    def _practice_data(self, html_text: str, page, config, files):
        if page.file.src_uri != practice.PRACTICE:
            return html_text
        hrefs = {c.uri: get_relative_url(files.get_file_from_path(c.uri).url, page.url) for c in self.cards}
        return html_text + practice.practice_data(self.cards, hrefs)

    def _notebook_assets(self, html_text: str, page, config, files):
        if not page.file.src_uri.endswith(".ipynb"):
            return html_text
        return notebook_assets.extract(html_text, Path(config["site_dir"]), page.file.dest_uri)

    on_page_content = CombinedEvent(_check_html, _meta_and_backlinks, _practice_data, _notebook_assets)

    @staticmethod
    def meta_line(meta: dict) -> str:
        parts = []
        difficulty = meta.get("difficulty")
        if isinstance(difficulty, str):
            level = html.escape(difficulty)
            parts.append(f'<span class="kb-badge kb-badge--{level}" title="Difficulty">{level}</span>')
        aliases = meta.get("aliases")
        if isinstance(aliases, list) and aliases:
            names = ", ".join(f"“{html.escape(str(a))}”" for a in aliases)
            parts.append(f'<span class="kb-aliases">Also asked as: {names}</span>')
        return f'<p class="kb-meta">{" ".join(parts)}</p>' if parts else ""

    # Under serve the policy is one fixed text (livereload's script makes it allow inline scripts), so
    # a page gets it as it is written, and a rebuild need not rewrite every page. A build's policy
    # lists the hashes of the theme's scripts, known only once the pages exist: on_post_build.
    def on_post_page(self, output, page, config):
        return csp.with_meta(output, csp.SERVE_POLICY) if self.serving else output

    def on_post_template(self, output_content, template_name, config):
        if self.serving and template_name.endswith(".html"):
            return csp.with_meta(output_content, csp.SERVE_POLICY)
        return output_content

    def on_build_error(self, error):
        highlight.uninstall()

    def on_post_build(self, config):
        highlight.uninstall()
        # After the search plugin wrote its index (it is listed first), before offline inlines it.
        site_dir = Path(config["site_dir"])
        index_file = site_dir / "search" / "search_index.json"
        if index_file.is_file():
            refine_search_index(index_file, self.aliases, self.names)
        if self.serving:  # HTML files copied from docs/ did not pass through on_post_page
            for f in self.files.static_pages():
                if f.dest_uri.endswith(".html"):
                    path = Path(f.abs_dest_path)
                    path.write_text(csp.with_meta(path.read_text(encoding="utf-8"), csp.SERVE_POLICY),
                                    encoding="utf-8")
            return
        shim = Path(config["docs_dir"]) / OFFLINE_SHIM if OFFLINE_SHIM in config["extra"].get("polyfills", []) else None
        csp.write_policy(site_dir, self.template_scripts, shim)


# Both are functions of the page's HTML alone. Under `make serve` an unchanged page comes back as
# the very string the last build gave it (vault/incremental.py), so a rebuild looks it up instead.
@functools.lru_cache(maxsize=4096)
def searchable(content: str) -> str:
    return plain_code_blocks(site_math.readable_html(content))


@functools.lru_cache(maxsize=4096)
def typeset_page(content: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The page with its math typeset and its tables wrapped, and the (TeX, message) of each formula KaTeX rejected."""
    errors: list[tuple[str, str]] = []
    html_text = site_math.render(content, lambda tex, message: errors.append((tex, message)))
    return wrapped_tables(empty_headers_as_cells(html_text)), tuple(errors)


def math_error(page, tex: str, message: str) -> None:
    """Name the page and line of a formula KaTeX rejects (a warning, so a strict build fails)."""
    text = page.file.content_string if page.file.abs_src_path else ""
    line = next((i for i, l in enumerate(text.splitlines(), 1) if tex.split("\n")[0] in l), 0)
    log.warning(f"{page.file.src_uri}:{line}: {message}")


def group(items: list[dict]) -> list[dict]:
    """Split a long section's navigation into titled groups of NAV_GROUP_SIZE pages."""
    if len(items) <= NAV_GROUP_SIZE:
        return items
    groups = []
    for start in range(0, len(items), NAV_GROUP_SIZE):
        chunk = items[start:start + NAV_GROUP_SIZE]
        first, last = next(iter(chunk[0])), next(iter(chunk[-1]))
        groups.append({f"{first} … {last}": chunk})
    return groups
