"""`make bench`: figures for build speed, search index size and page weight. Prints, asserts nothing.

1. Build scaling: synthetic vaults of 250, 1,000 and 2,000 notes built with the real configuration
   (plugins, hooks, theme), against the floor of converting the same notes with Python-Markdown,
   measured in the same run; plus the rebuild `make serve` does after one note changes.
2. Search index: bytes in total and per page, for the real site and the synthetic vaults.
3. Page weight: bytes a question page transfers on first load (HTML, CSS, JS, fonts, images,
   other), measured in Chromium against the built site.
"""
from __future__ import annotations

import argparse
import gzip
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import markdown
from mkdocs.commands.build import build
from mkdocs.config import load_config

from .synthetic import make_vault
from .urls import clean_dest_uri

ROOT = Path(__file__).resolve().parent.parent


def load(project: Path, site_dir: Path):
    return load_config(str(project / "mkdocs.yml"), site_dir=str(site_dir), strict=True)


def timed_build(project: Path, site_dir: Path) -> float:
    config = load(project, site_dir)  # `mkdocs serve` reloads the configuration on every rebuild too
    start = time.perf_counter()
    build(config)
    return time.perf_counter() - start


def markdown_floor(project: Path, with_extensions: bool) -> float:
    """Convert every note with Python-Markdown alone: no extensions, or the site's extension set."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((project / "docs").rglob("*.md"))]
    kwargs = {}
    if with_extensions:
        config = load(project, project / "unused-site")
        kwargs = dict(extensions=config["markdown_extensions"], extension_configs=config["mdx_configs"])
    start = time.perf_counter()
    for text in texts:
        markdown.Markdown(**kwargs).convert(text)
    return time.perf_counter() - start


def material_floor(project: Path, site_dir: Path) -> float:
    """Build the same notes with Material and its search plugin alone: no navigation, no Markdown
    extensions, none of the site's plugins. What the theme costs before the site adds anything."""
    config_file = project / "mkdocs-material-floor.yml"
    config_file.write_text("site_name: Material floor\ntheme:\n  name: material\nplugins: [search]\n"
                           "nav: [index.md]\n", encoding="utf-8")
    config = load_config(str(config_file), site_dir=str(site_dir))
    start = time.perf_counter()
    build(config)
    return time.perf_counter() - start


def best_of(fn, repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def bench_build(sizes: list[int], repeats: int) -> dict[int, dict]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            project = make_vault(Path(tmp) / f"vault-{n}", n, ROOT)
            site = Path(tmp) / f"site-{n}"
            floor_plain = best_of(lambda: markdown_floor(project, False), repeats)
            floor_ext = best_of(lambda: markdown_floor(project, True), repeats)
            floor_material = best_of(lambda: material_floor(project, site), repeats)
            full = best_of(lambda: timed_build(project, site), repeats)
            note = next((project / "docs" / "section-00").glob("Synthetic note *.md"))
            note.write_text(note.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
            rebuild = timed_build(project, site)
            index = site / "search" / "kb_index.js"
            pages = sum(1 for _ in (project / "docs").rglob("*.md"))
            results[n] = dict(floor_plain=floor_plain, floor_ext=floor_ext, floor_material=floor_material,
                              build=full, rebuild=rebuild, index_bytes=index.stat().st_size, pages=pages)
            print(f"  built {n} notes", file=sys.stderr)
    return results


def bench_real_site() -> tuple[Path, dict]:
    tmp = Path(tempfile.mkdtemp())
    site = tmp / "site"
    seconds = timed_build(ROOT, site)
    index = site / "search" / "kb_index.js"
    pages = sum(1 for _ in site.rglob("index.html")) - 1  # 404 is not a page; the home is
    return site, dict(build=seconds, index_bytes=index.stat().st_size, pages=pages)


def page_weight(site: Path, pages: list[str]) -> dict[str, dict[str, int]]:
    """Bytes by kind that each page transfers on a first, uncached load."""
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, Server, settle

    server = Server(site)
    kinds = {"document": "HTML", "stylesheet": "CSS", "script": "JS", "font": "fonts", "image": "images"}
    weights = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            for page_url in pages:
                context = browser.new_context()
                sizes: dict[str, int] = {}

                def on_response(response, sizes=sizes):
                    kind = kinds.get(response.request.resource_type, "other (search index, data)")
                    try:
                        body = response.body()
                    except Exception:  # a redirect or an aborted response has no body
                        return
                    raw, gz = sizes.get(kind, (0, 0))
                    sizes[kind] = (raw + len(body), gz + len(gzip.compress(body)))

                context.on("response", on_response)
                page = context.new_page()
                page.goto(server.url + page_url)
                settle(page)
                page.wait_for_timeout(500)
                weights[page_url] = sizes
                context.close()
            browser.close()
    finally:
        server.close()
    return weights


def kb(n: float) -> str:
    return f"{n / 1024:,.1f} KB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 2000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("mkdocs").setLevel(logging.ERROR)
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")

    print("## Build scaling (synthetic vaults, real configuration)\n")
    results = bench_build(args.sizes, args.repeats)
    print("Floors: Python-Markdown with no extensions (the plain floor) and with the site's extensions; "
          "Material + search with no navigation, no extensions and none of the site's plugins. "
          "Ratios are to the plain floor.\n")
    print("| notes | plain floor | site's extensions | Material + search | full build | one-note rebuild "
          "(make serve) | search index | per page |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        def cell(key):
            return f"{r[key]:.2f} s ({r[key] / r['floor_plain']:.1f}×)"
        print(f"| {n:,} | {r['floor_plain']:.2f} s | {cell('floor_ext')} | {cell('floor_material')} | "
              f"{cell('build')} | {r['rebuild']:.2f} s | {kb(r['index_bytes'])} | "
              f"{kb(r['index_bytes'] / r['pages'])} |")
    if 1000 in results and 2000 in results:
        print(f"\nGrowth from 1,000 to 2,000 notes: {results[2000]['build'] / results[1000]['build']:.2f}× "
              f"(linear would be 2.00×)")

    print("\n## The real site\n")
    site, real = bench_real_site()
    print(f"Build: {real['build']:.2f} s for {real['pages']} pages. Search index: {kb(real['index_bytes'])}, "
          f"{kb(real['index_bytes'] / real['pages'])} per page.")

    if not args.skip_browser:
        print("\n## Page weight on first load (uncached), measured in Chromium\n")
        print("Bytes as served by a plain file server, and in brackets as gzip, which most hosts "
              "(GitHub Pages included) apply to text.\n")
        pages = ["", clean_dest_uri("classical-cv/RANSAC.md").removesuffix("index.html"),
                 clean_dest_uri("deep-learning/LSTM and GRU.md").removesuffix("index.html")]
        weights = page_weight(site, pages)
        kinds = sorted({k for w in weights.values() for k in w})
        print("| page | " + " | ".join(kinds) + " | total |")
        print("|---|" + "---:|" * (len(kinds) + 1))
        for url, w in weights.items():
            cells = [f"{kb(w[k][0])} ({kb(w[k][1])})" if k in w else "0" for k in kinds]
            total = (sum(v[0] for v in w.values()), sum(v[1] for v in w.values()))
            print(f"| /{url} | " + " | ".join(cells) + f" | {kb(total[0])} ({kb(total[1])}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
