"""`make bench`: figures for build speed, search index size and page weight. Prints, asserts nothing.

1. Build scaling: synthetic vaults of 250, 1,000 and 2,000 notes built with the real configuration
   (plugins, hooks, theme), against the floor of converting the same notes with Python-Markdown,
   measured in the same run, and against issue 18's framework floor (Material, search and the site's
   Markdown extensions). At 1,000 notes and on the real site: seconds from saving a note to
   `make serve` serving it, beside a cold `mkdocs build` and Zensical's cached rebuild.
2. Search index: bytes in total and per page, for the real site and the synthetic vaults.
3. Page weight: bytes a question page transfers on first load (HTML, CSS, JS, fonts, images,
   other), measured in Chromium against the built site.
"""
from __future__ import annotations

import argparse
import gzip
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import markdown
from mkdocs.commands.build import build
from mkdocs.config import load_config

from . import diskcache
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


def framework_floor(project: Path, site_dir: Path) -> float:
    """The floor issue 18 sets: Material, its search plugin and the site's Markdown extensions, with a
    one-entry navigation and nothing else (none of the site's plugins, no theme overrides)."""
    config_file = project / "mkdocs-framework-floor.yml"
    config_file.write_text(floor_config(), encoding="utf-8")
    config = load_config(str(config_file), site_dir=str(site_dir))
    start = time.perf_counter()
    build(config)
    return time.perf_counter() - start


def floor_config() -> str:
    real = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    extensions = real[real.index("\nmarkdown_extensions:"):real.index("\nextra_javascript:")]
    return f"site_name: Framework floor\ntheme:\n  name: material\nplugins: [search]\nnav: [index.md]\n{extensions}\n"


def timed_build_empty_cache(project: Path, site_dir: Path) -> float:
    """timed_build with vault/diskcache.py pointed at an empty directory: what a build costs the first
    time, without the highlighted code and formulas that earlier builds (or benchmark runs) kept."""
    saved = diskcache.CACHE_DIR
    with tempfile.TemporaryDirectory() as empty:
        diskcache.CACHE_DIR = Path(empty)
        diskcache.named.cache_clear()
        try:
            return timed_build(project, site_dir)
        finally:
            diskcache.CACHE_DIR = saved
            diskcache.named.cache_clear()


def cold_build(project: Path, site_dir: Path) -> float:
    """`mkdocs build` as a command: a new interpreter, its imports and the whole build."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site_dir)], cwd=project,
                   check=True, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    return time.perf_counter() - start


def save_to_served(project: Path, note: Path, url_path: str, saves: int = 3) -> list[float]:
    """Seconds from saving `note` to `make serve` (vault/serve.py) serving the page with the edit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "vault.serve", "-a", f"127.0.0.1:{port}"], cwd=project,
                            env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mount = urlsplit(load(project, project / "unused-site")["site_url"] or "/").path
    url = f"http://127.0.0.1:{port}{mount}{url_path}"

    def served() -> str:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    times, original = [], note.read_text(encoding="utf-8")
    try:
        deadline = time.monotonic() + 600
        while not served() and time.monotonic() < deadline:
            time.sleep(0.2)
        for i in range(saves):
            time.sleep(1)  # let the watcher settle after the last build
            marker = f"benchmark edit {i} {time.time_ns()}"
            start = time.perf_counter()
            note.write_text(original + f"\n{marker}\n", encoding="utf-8")
            while marker not in served():
                time.sleep(0.02)
                if time.perf_counter() - start > 300:
                    raise RuntimeError(f"{url} never showed the edit")
            times.append(time.perf_counter() - start)
    finally:
        note.write_text(original, encoding="utf-8")
        proc.terminate()
        proc.wait(timeout=30)
    return times


ZENSICAL = "zensical==0.0.59"  # 0.1.x needs a package the registry here lacks


def zensical_venv(tmp: Path) -> Path | None:
    """Zensical in a throw-away venv (it is a peer to compare with, not a dependency)."""
    venv = tmp / "zensical-venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", ZENSICAL],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        return None
    return venv / "bin" / "zensical"


def zensical_builds(zensical: Path, project: Path, note: Path) -> dict[str, float]:
    """Zensical with the framework floor's configuration: cold (cache cleaned), after one note
    changed, and with nothing changed. (Its TOC cannot take the site's Python slugify function.)"""
    config = project / "zensical.yml"
    config.write_text("\n".join(l for l in floor_config().splitlines() if "slugify" not in l) + "\n",
                      encoding="utf-8")

    def run(*flags) -> float:
        start = time.perf_counter()
        subprocess.run([str(zensical), "build", "-f", str(config), *flags], cwd=project, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start

    cold = run("--clean")
    original = note.read_text(encoding="utf-8")
    note.write_text(original + "\nOne more line.\n", encoding="utf-8")
    one_note = run()
    nothing = run()
    note.write_text(original, encoding="utf-8")
    return dict(cold=cold, one_note=one_note, nothing=nothing)


def best_of(fn, repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def bench_build(sizes: list[int], repeats: int, serve_sizes: set[int], with_zensical: bool) -> dict[int, dict]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        zensical = zensical_venv(Path(tmp)) if with_zensical and serve_sizes else None
        if with_zensical and serve_sizes and zensical is None:
            print(f"  could not install {ZENSICAL}: no Zensical figures", file=sys.stderr)
        for n in sizes:
            project = make_vault(Path(tmp) / f"vault-{n}", n, ROOT)
            site = Path(tmp) / f"site-{n}"
            floor_plain = best_of(lambda: markdown_floor(project, False), repeats)
            floor_ext = best_of(lambda: markdown_floor(project, True), repeats)
            floor_material = best_of(lambda: material_floor(project, site), repeats)
            floor_framework = best_of(lambda: framework_floor(project, site), repeats)
            full = best_of(lambda: timed_build_empty_cache(project, site), repeats)
            index = site / "search" / "kb_index.js"
            pages = sum(1 for _ in (project / "docs").rglob("*.md"))
            results[n] = dict(floor_plain=floor_plain, floor_ext=floor_ext, floor_material=floor_material,
                              floor_framework=floor_framework, build=full, index_bytes=index.stat().st_size,
                              pages=pages)
            if n in serve_sizes:
                note = next((project / "docs" / "section-00").glob("Synthetic note *.md"))
                url = clean_dest_uri(note.relative_to(project / "docs").as_posix()).removesuffix("index.html")
                results[n]["served"] = save_to_served(project, note, url)
                if zensical:
                    results[n]["zensical"] = zensical_builds(zensical, project, note)
            print(f"  built {n} notes", file=sys.stderr)
    return results


def bench_real_site(serve: bool) -> tuple[Path, dict]:
    tmp = Path(tempfile.mkdtemp())
    site = tmp / "site"
    seconds = timed_build(ROOT, site)
    index = site / "search" / "kb_index.js"
    pages = sum(1 for _ in site.rglob("index.html")) - 1  # 404 is not a page; the home is
    result = dict(build=seconds, index_bytes=index.stat().st_size, pages=pages)
    if serve:  # on a copy, so a benchmark never edits the vault
        copy = tmp / "project"
        for name in ("docs", "snippets", "overrides"):
            shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
        result["cold"] = cold_build(copy, tmp / "cold-site")
        note = copy / "docs" / "classical-cv" / "RANSAC.md"
        url = clean_dest_uri("classical-cv/RANSAC.md").removesuffix("index.html")
        result["served"] = save_to_served(copy, note, url)
        result["cold_after"] = cold_build(copy, tmp / "cold-site")
    return site, result


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
    parser.add_argument("--skip-serve", action="store_true", help="no make-serve or Zensical figures")
    args = parser.parse_args(argv)
    logging.getLogger("mkdocs").setLevel(logging.ERROR)
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")

    print("## Build scaling (synthetic vaults, real configuration)\n")
    serve_sizes = set() if args.skip_serve else {n for n in args.sizes if n == 1000}
    results = bench_build(args.sizes, args.repeats, serve_sizes, with_zensical=not args.skip_serve)
    print("Floors: Python-Markdown with no extensions (the plain floor) and with the site's extensions; "
          "Material + search with no navigation, no extensions and none of the site's plugins. "
          "The full build starts from an empty .cache/ (no highlighted code or formulas kept from earlier "
          "builds). Ratios are to the plain floor.\n")
    print("| notes | plain floor | site's extensions | Material + search | full build | search index | per page |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        def cell(key):
            return f"{r[key]:.2f} s ({r[key] / r['floor_plain']:.1f}×)"
        print(f"| {n:,} | {r['floor_plain']:.2f} s | {cell('floor_ext')} | {cell('floor_material')} | "
              f"{cell('build')} | {kb(r['index_bytes'])} | "
              f"{kb(r['index_bytes'] / r['pages'])} |")
    if 1000 in results and 2000 in results:
        print(f"\nGrowth from 1,000 to 2,000 notes: {results[2000]['build'] / results[1000]['build']:.2f}× "
              f"(linear would be 2.00×; the target is at most 2.1×)")
    print("\nAgainst the framework floor of issue 18 (Material, its search plugin and the site's Markdown "
          "extensions, a one-entry navigation, nothing else; the target is at most 1.5×):\n")
    print("| notes | framework floor | full build | ratio |")
    print("|---:|---:|---:|---:|")
    for n, r in results.items():
        ratio = r["build"] / r["floor_framework"]
        print(f"| {n:,} | {r['floor_framework']:.2f} s | {r['build']:.2f} s | {ratio:.2f}× |")
    for n, r in results.items():
        if "served" in r:
            served = statistics.median(r["served"])
            print(f"\n{n:,} notes, one note saved under `make serve` until the page shows it: median "
                  f"{served:.2f} s of {', '.join(f'{t:.2f}' for t in r['served'])} s.")
            if "zensical" in r:
                z = r["zensical"]
                print(f"{ZENSICAL}, the same notes and the framework floor's configuration: cold {z['cold']:.2f} s, "
                      f"one note changed {z['one_note']:.2f} s, nothing changed {z['nothing']:.2f} s. "
                      f"make serve / Zensical's one-note rebuild: {served / z['one_note']:.2f}× (target ≤ 1).")

    print("\n## The real site\n")
    site, real = bench_real_site(serve=not args.skip_serve)
    print(f"Build: {real['build']:.2f} s for {real['pages']} pages. Search index: {kb(real['index_bytes'])}, "
          f"{kb(real['index_bytes'] / real['pages'])} per page.")
    if "served" in real:
        cold = statistics.median([real["cold"], real["cold_after"]])
        served = statistics.median(real["served"])
        print(f"\nA cold `mkdocs build` (a new process, imports included; .cache/ as the builds before it left "
              f"it, as on a contributor's machine): {real['cold']:.2f} s and "
              f"{real['cold_after']:.2f} s. One note saved under `make serve` until the page shows it: median "
              f"{served:.2f} s of {', '.join(f'{t:.2f}' for t in real['served'])} s, "
              f"{served / cold:.2f}× a cold build (target ≤ 0.25×).")

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
