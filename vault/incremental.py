"""Incremental rebuilds for `make serve`: reuse what the builds before it in this process computed.

Written for MkDocs 1.6.1, Material 9.8.1 and pymdown-extensions 13.1.2 (constraints.txt pins them).
MkDocs has no hook for reusing work between builds: `mkdocs serve` reloads the configuration and
runs a whole build on every save. `install()` wraps the steps that cost most, each with a cache
kept for the life of the process and keyed by a hash of everything that step reads:

- `Page.render` (Markdown to HTML, where Pygments highlights the snippet code): the page's Markdown
  as the plugins left it (resolved wikilinks and the meta line are in it; the backlinks list is
  added to the HTML after it, on every build), its URL, the Markdown configuration and every
  file's URL (relative links resolve against them). The files
  pymdownx.snippets read are recorded with a hash of their contents, and an entry is reused only
  while each still hashes the same, so a snippet edit re-renders exactly the pages that include it.
  The warnings a render logged are logged again when it is reused, so a strict build still fails.
- Material's search entries for a page: its HTML, URL, title, outline and meta.
- The themed page (`main.html`): the navigation, the configuration file, the theme overrides, and
  the page's HTML, outline, meta, title and neighbours. A title change changes the navigation, so
  every page is themed again; a text edit themes one page.
- Compiled templates, by name and a checksum of their source; the theme's static files (a walk of
  Material's ten thousand icons each build), by the theme's directories and the files in those not
  installed as packages (overrides/).
- mkdocs-jupyter's choice of which files are notebooks, by path, stat and its patterns.
- A page's front matter, by its source text; and, in vault/vault.py, a note's parse and wikilink
  rendering, by its text, the file set and the headings its links point into.
- The site directory: MkDocs empties it and writes every file again. Here a file is written only
  when its bytes differ from what this process last wrote there (or it changed on disk since, as
  the error banner changes it), a theme or docs file is copied only when its source changed, and
  after the build the files it did not produce are deleted, so the directory holds what a full
  build writes.

Everything else (the plugins' events, the tags listings, backlinks, the search index file, the
deck and handout) still runs on every build, so a rebuild writes what a full build would:
tests/test_incremental.py compares every file after a sequence of edits. Some of it looks up pure
results in caches of its own, which `fresh()` leaves alone since they cannot change an output: a
page's search text and typeset math (vault/plugin.py), the deck's archive (vault/anki.py), and
what vault/diskcache.py keeps in .cache/ for every build.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import json
import logging
import os
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
from material.plugins.search.plugin import SearchIndex
from mkdocs import utils
from mkdocs.plugins import PluginCollection
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from mkdocs.structure.toc import AnchorLink, TableOfContents
from mkdocs.theme import Theme
from mkdocs.utils import meta
from mkdocs_jupyter.plugin import Plugin as NotebookPlugin
from pymdownx.snippets import SnippetPreprocessor

from . import vault

_reads: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("snippet_reads", default=None)


@dataclass
class Rendered:
    content: str
    toc: object
    title: str | None
    present_anchor_ids: set[str] | None
    links_to_anchors: dict[str, dict[str, str]] | None  # by the linked file's src_uri
    snippets: dict[str, str]  # path -> hash of its contents when the page was rendered
    records: list[logging.LogRecord]


_cache: dict[str, Rendered] = {}
stats = {"hits": 0, "misses": 0}
_search_entries: dict[str, list[dict]] = {}
_pages: dict[str, str] = {}  # a page's key -> the HTML its template made
_original_render = Page.render
_original_read_lines = SnippetPreprocessor.read_lines
_original_add_entry = SearchIndex.add_entry_from_context
_original_get_env = Theme.get_env
_original_get_data = meta.get_data
_front_matter: dict[str, tuple[str, dict]] = {}  # a page's source -> its body and parsed front matter
_original_clean_directory = utils.clean_directory
_original_write_file = utils.write_file
_original_copy_file = File.copy_file
_original_post_build = PluginCollection.on_post_build
_original_add_files_from_theme = Files.add_files_from_theme
_original_should_include = NotebookPlugin.should_include
_notebook_choices: dict[tuple, bool] = {}  # (path, its stat, ignore, include) -> whether mkdocs-jupyter takes it
_theme_files: dict[tuple, list[tuple[str, str]]] = {}  # theme signature -> (path, theme dir) of its static files
INSTALLED = os.path.realpath(sysconfig.get_paths()["purelib"])
# Output path -> (what was written: a digest of the bytes, or the source file's stat; the output's stat).
_written: dict[str, tuple[tuple, tuple]] = {}
_builds: dict[str, tuple[int, set[str], set[str]]] = {}  # site dir -> (start, files before it, files it wrote)


class _TemplatesInMemory(jinja2.BytecodeCache):
    """Compiled templates, kept by name and a checksum of their source: an edit to overrides/
    compiles that template again, and nothing else is compiled twice."""

    def __init__(self):
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


_templates = _TemplatesInMemory()


def digest(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def file_digest(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return digest(f.read())
    except OSError:
        return ""


def _files_signature(files) -> str:
    # Computed once per build: each build makes a new Files object.
    signature = getattr(files, "_kb_signature", None)
    if signature is None:
        signature = digest("\n".join(f"{f.src_uri}\t{f.url}" for f in files))
        files._kb_signature = signature
    return signature


def _key(page: Page, config, files) -> str:
    markdown_config = json.dumps([config["markdown_extensions"], config["mdx_configs"]], sort_keys=True, default=repr)
    return digest("\0".join([page.markdown or "", page.file.src_uri, page.url, markdown_config,
                             _files_signature(files)]))


def _copy_toc(toc: TableOfContents) -> TableOfContents:
    """A fresh outline of new AnchorLinks: what copy.deepcopy gives, without its generic machinery."""
    def links(items) -> list[AnchorLink]:
        out = []
        for item in items:
            link = AnchorLink(item.title, item.id, item.level)
            link.children = links(item.children)
            out.append(link)
        return out
    return TableOfContents(links(toc.items))


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if record.levelno >= logging.INFO:
            self.records.append(record)


def _read_lines(self, path):
    reads = _reads.get()
    if reads is not None:
        reads[path] = file_digest(path)
    return _original_read_lines(self, path)


def _render(self: Page, config, files) -> None:
    key = _key(self, config, files)
    hit = _cache.get(key)
    if hit is not None and all(file_digest(p) == h for p, h in hit.snippets.items()):
        stats["hits"] += 1
        for record in hit.records:
            logging.getLogger(record.name).handle(record)
        self.content = hit.content
        self.toc = _copy_toc(hit.toc)  # the tags plugin adds its listings to a page outline
        self._title_from_render = hit.title
        self.present_anchor_ids = set(hit.present_anchor_ids) if hit.present_anchor_ids is not None else None
        if hit.links_to_anchors is not None:
            self.links_to_anchors = {files.get_file_from_path(uri): dict(anchors)
                                     for uri, anchors in hit.links_to_anchors.items()}
        return
    stats["misses"] += 1
    recorder, token = _Recorder(), _reads.set({})
    logger = logging.getLogger("mkdocs")
    logger.addHandler(recorder)
    try:
        _original_render(self, config, files)
        snippets = _reads.get() or {}
    finally:
        logger.removeHandler(recorder)
        _reads.reset(token)
    links = getattr(self, "links_to_anchors", None)
    _cache[key] = Rendered(
        content=self.content, toc=_copy_toc(self.toc), title=self._title_from_render,
        present_anchor_ids=set(self.present_anchor_ids) if self.present_anchor_ids is not None else None,
        links_to_anchors=None if links is None else {f.src_uri: dict(a) for f, a in links.items()},
        snippets=snippets, records=recorder.records)


def _toc_outline(items) -> list:
    return [(i.id, i.url, i.title, _toc_outline(i.children)) for i in items]


def _add_search_entry(self: SearchIndex, page) -> None:
    # The entries Material's search makes of a page depend on its HTML, URL, title, outline and meta.
    key = digest("\0".join([page.content or "", page.url, str(page.title),
                            json.dumps(_toc_outline(page.toc), default=repr),
                            json.dumps(page.meta, sort_keys=True, default=repr)]))
    entries = _search_entries.get(key)
    if entries is None:
        start = len(self.entries)
        _original_add_entry(self, page)
        _search_entries[key] = copy.deepcopy(self.entries[start:])
    else:
        self.entries.extend({**e, **({"tags": list(e["tags"])} if "tags" in e else {})} for e in entries)


def _once(holder, name: str, compute) -> str:
    # Signatures of what every page shares (navigation, configuration, templates), once per build:
    # each build makes new objects, so a value kept on one never outlives its build.
    value = getattr(holder, name, None)
    if value is None:
        value = compute()
        setattr(holder, name, value)
    return value


def _nav_outline(items) -> list:
    return [(str(i.title), getattr(i, "url", None), _nav_outline(i.children or [])) for i in items]


def _page_key(context) -> str | None:
    page, nav, config = context.get("page"), context.get("nav"), context.get("config")
    if page is None or nav is None or config is None:
        return None
    shared = _once(nav, "_kb_signature", lambda: digest("\0".join([
        json.dumps(_nav_outline(nav.items)),
        file_digest(config.config_file_path) if config.config_file_path else "",
        json.dumps([config["site_url"], config["extra"], config["extra_css"], config["extra_javascript"]],
                   sort_keys=True, default=repr),
        *(file_digest(str(p)) + str(p) for d in config.theme.dirs[:-1] for p in sorted(Path(d).rglob("*.html"))),
    ])))
    neighbours = [(n.url, str(n.title)) if n else None for n in (page.previous_page, page.next_page)]
    return digest("\0".join([shared, page.file.src_uri, page.url, str(page.title), page.content or "",
                             json.dumps(_toc_outline(page.toc), default=repr),
                             json.dumps(page.meta, sort_keys=True, default=repr),
                             json.dumps([page.canonical_url, page.edit_url, neighbours, context.get("base_url")])]))


class _RememberedTemplate:
    """A page template whose output is reused while everything it reads hashes the same."""

    def __init__(self, template: jinja2.Template):
        self.template = template

    def __getattr__(self, name):
        return getattr(self.template, name)

    def render(self, *args, **kwargs) -> str:
        # MkDocs renders a page as template.render(context); other callers (the tags plugin) pass through.
        key = _page_key(args[0]) if len(args) == 1 and not kwargs and isinstance(args[0], dict) else None
        if key is None:
            return self.template.render(*args, **kwargs)
        context = args[0]
        output = _pages.get(key)
        if output is None:
            output = _pages[key] = self.template.render(context)
        return output


def _get_data(source: str) -> tuple[str, dict]:
    if source not in _front_matter:
        if len(_front_matter) >= vault.CACHE_LIMIT:
            _front_matter.clear()
        _front_matter[source] = _original_get_data(source)
    body, data = _front_matter[source]
    return body, copy.deepcopy(data)  # plugins change a page's meta in place


def _get_env(self: Theme):
    env = _original_get_env(self)
    env.bytecode_cache = _templates
    get_template = env.get_template
    env.get_template = lambda *args, **kwargs: _RememberedTemplate(get_template(*args, **kwargs))
    return env


def _stat(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _site_of(path: str) -> set[str] | None:
    for site_dir, (_, _, produced) in _builds.items():
        if path.startswith(site_dir + os.sep):
            return produced
    return None


def _unchanged(path: str, source: tuple) -> bool:
    """Whether `path` still holds what was last written there from `source`; notes it as produced."""
    path = os.path.abspath(path)
    produced = _site_of(path)
    if produced is not None:
        produced.add(path)
    last = _written.get(path)
    return last is not None and last[0] == source and _stat(path) == last[1]


def _record(path: str, source: tuple) -> None:
    _written[os.path.abspath(path)] = (source, _stat(path))


def _clean_directory(directory: str) -> None:
    # Keep the files: the build rewrites only those that change, and post_build deletes the rest.
    directory = os.path.abspath(directory)
    before = set()
    for root, dirs, names in os.walk(directory):
        if root == directory:  # MkDocs leaves the site directory's hidden entries alone
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            names = [n for n in names if not n.startswith(".")]
        before.update(os.path.join(root, n) for n in names)
    _builds[directory] = (time.time_ns(), before, set())


def _write_file(content: bytes, output_path: str) -> None:
    source = ("bytes", digest(content))
    if _unchanged(output_path, source):
        return
    _original_write_file(content, output_path)
    _record(output_path, source)


def _copy_file(self: File, dirty: bool = False) -> None:
    content = self._content
    if content is not None:
        source = ("bytes", digest(content))
    else:
        source = ("copy", self.abs_src_path, _stat(self.abs_src_path))
    if _unchanged(self.abs_dest_path, source):
        return
    _original_copy_file(self, dirty)
    _record(self.abs_dest_path, source)


def _post_build(self: PluginCollection, *, config) -> None:
    # Before the plugins' post_build: the CSP pass rewrites every HTML file there, stale ones too.
    site_dir = os.path.abspath(config["site_dir"])
    if site_dir in _builds:
        _remove_stale(site_dir, *_builds.pop(site_dir))
    _original_post_build(self, config=config)


def _remove_stale(site_dir: str, start: int, before: set[str], produced: set[str]) -> None:
    """Delete what the last build left and this one has not written, through MkDocs' helpers (noted
    as produced) or directly, as plugins write their files (modified since the build began). What
    the plugins' post_build writes comes after, as in a full build."""
    for path in before - produced:
        stat = _stat(path)
        # File times come from the kernel's coarse clock, a few ms behind time.time_ns(): no plugin
        # writes into the site directory that soon after it is cleaned.
        if stat is not None and stat[1] < start:
            os.unlink(path)
            _written.pop(path, None)
            parent = os.path.dirname(path)
            while parent != site_dir and not os.listdir(parent):
                os.rmdir(parent)
                parent = os.path.dirname(parent)


def _listing(directory: str) -> tuple[str, ...]:
    return tuple(sorted(os.path.relpath(os.path.join(root, n), directory)
                        for root, _, names in os.walk(directory) for n in names))


def _add_files_from_theme(self: Files, env, config) -> None:
    # Installed themes do not change while the process runs; a custom_dir may, so its files are in the key.
    key = (tuple(config.theme.dirs), tuple(config.theme.static_templates), tuple(utils.markdown_extensions),
           *(_listing(d) for d in config.theme.dirs if not os.path.realpath(d).startswith(INSTALLED)))
    if key not in _theme_files:
        found = Files([])
        _original_add_files_from_theme(found, env, config)
        _theme_files[key] = [(f.src_uri, f.src_dir) for f in found]
    for path, directory in _theme_files[key]:
        if self.get_file_from_path(path) is None:  # theme files do not override docs_dir files
            self.append(File(path, directory, config.site_dir, config.use_directory_urls))


def _should_include(self: NotebookPlugin, file) -> bool:
    # mkdocs-jupyter asks this of every file, several times per build, matching each against its
    # glob patterns (and reading a .md file's front matter when no pattern ignores it). The answer
    # depends on the path, the file's contents and the patterns, so the file's stat is in the key.
    path = file.abs_src_path
    if path is None:
        return False
    key = (path, _stat(path), tuple(self.config["ignore"]), tuple(self.config["include"]))
    if key not in _notebook_choices:
        _notebook_choices[key] = _original_should_include(self, file)
    return _notebook_choices[key]


def install() -> None:
    """Reuse work from earlier builds in this process (idempotent)."""
    Page.render = _render
    SnippetPreprocessor.read_lines = _read_lines
    SearchIndex.add_entry_from_context = _add_search_entry
    Theme.get_env = _get_env
    meta.get_data = _get_data
    utils.clean_directory = _clean_directory
    utils.write_file = _write_file
    File.copy_file = _copy_file
    PluginCollection.on_post_build = _post_build
    Files.add_files_from_theme = _add_files_from_theme
    NotebookPlugin.should_include = _should_include


def uninstall() -> None:
    Page.render = _original_render
    SnippetPreprocessor.read_lines = _original_read_lines
    SearchIndex.add_entry_from_context = _original_add_entry
    Theme.get_env = _original_get_env
    meta.get_data = _original_get_data
    utils.clean_directory = _original_clean_directory
    utils.write_file = _original_write_file
    File.copy_file = _original_copy_file
    PluginCollection.on_post_build = _original_post_build
    Files.add_files_from_theme = _original_add_files_from_theme
    NotebookPlugin.should_include = _original_should_include
    reset()


@contextlib.contextmanager
def fresh():
    """Build from nothing inside the block (the caches are set aside, then restored): for the test
    that compares an incremental build with a full one in the same process."""
    saved = [dict(cache) for cache in _caches()]
    reset()
    try:
        yield
    finally:
        reset()
        for cache, entries in zip(_caches(), saved):
            cache.update(entries)


def _caches() -> list[dict]:
    return [_cache, _search_entries, _templates.store, _pages, _front_matter, _written, _builds,
            _theme_files, _notebook_choices, vault.PARSED, vault.RENDERED]


def reset() -> None:
    for cache in _caches():
        cache.clear()
    stats.update(hits=0, misses=0)
