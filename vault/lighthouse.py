"""`make lighthouse`: Lighthouse (npm, pinned in package.json) on sampled pages, beside stock Material.

Every site is served on 127.0.0.1 with gzip, as GitHub Pages serves it, and measured in the same run
with Lighthouse's mobile profile in Debian's Chromium: a one-page stock Material site (search plugin,
system fonts), this site, and optionally the site as it was at another git revision (`--before REV`,
built from `git archive` with this environment). Each page is measured `--runs` times; the table
shows the medians. A benchmark: it prints figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIGHTHOUSE = ROOT / "node_modules" / "lighthouse" / "cli" / "index.js"
CHROMIUM = "/usr/bin/chromium"
PAGES = {
    "home": "",
    "deep-learning/backpropagation (math)": "deep-learning/backpropagation/",
    "classical-cv/ransac (math)": "classical-cv/ransac/",
    "practice": "practice/",
    "notes/crops-lab (notebook)": "notes/crops-lab/",
    "tags": "tags/",
}
CATEGORIES = ["performance", "accessibility", "best-practices", "seo"]
COMPRESSIBLE = (".html", ".css", ".js", ".json", ".svg", ".xml", ".txt", ".map")
STOCK_PAGE = """# Stock Material

A one-page site built with Material and its search plugin, nothing else, as the yardstick.

## A section

Some text, a [link](#a-section) and a list:

- one
- two
"""


class GzipHandler(SimpleHTTPRequestHandler):
    """Static files, text types gzipped when the client accepts it (as GitHub Pages does)."""

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if (path.suffix not in COMPRESSIBLE or not path.is_file()
                or "gzip" not in self.headers.get("Accept-Encoding", "")):
            return super().send_head()
        body = compressed(str(path), path.stat().st_mtime)
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=600")
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, *args) -> None:
        pass


@functools.lru_cache(maxsize=None)
def compressed(path: str, mtime: float) -> bytes:
    return gzip.compress(Path(path).read_bytes(), compresslevel=6)


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(GzipHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def build(project: Path, site_dir: Path) -> Path:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
                          cwd=project, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{project}: mkdocs build failed\n{proc.stderr[-3000:]}")
    return site_dir


def stock_material(work: Path) -> Path:
    project = work / "stock"
    (project / "docs").mkdir(parents=True)
    (project / "docs" / "index.md").write_text(STOCK_PAGE, encoding="utf-8")
    (project / "mkdocs.yml").write_text(
        "site_name: Stock Material\nsite_description: A one-page stock Material site.\n"
        "theme:\n  name: material\n  font: false\nplugins: [search]\n", encoding="utf-8")
    return build(project, work / "stock-site")


def at_revision(rev: str, work: Path) -> Path:
    project = work / f"rev-{rev}"
    project.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(project)], input=archive, check=True)
    return build(project, work / f"rev-{rev}-site")


def lighthouse(url: str, out: Path) -> dict:
    env = dict(os.environ, CHROME_PATH=CHROMIUM)
    cmd = ["node", str(LIGHTHOUSE), url, "--quiet", "--output=json", f"--output-path={out}",
           f"--only-categories={','.join(CATEGORIES)}",
           "--chrome-flags=--headless=new --no-sandbox --disable-gpu --no-first-run"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode or not out.is_file():
        raise RuntimeError(f"lighthouse {url}: {proc.stderr[-2000:]}")
    report = json.loads(out.read_text(encoding="utf-8"))
    audits = report["audits"]
    row = {c: round(100 * (report["categories"][c]["score"] or 0)) for c in CATEGORIES}
    row["lcp"] = audits["largest-contentful-paint"]["numericValue"] / 1000
    row["tbt"] = audits["total-blocking-time"]["numericValue"]
    row["kib"] = audits["total-byte-weight"]["numericValue"] / 1024
    row["failed"] = sorted(
        ref["id"] for c in CATEGORIES[1:] for ref in report["categories"][c]["auditRefs"]
        if ref["weight"] and audits[ref["id"]]["score"] is not None and audits[ref["id"]]["score"] < 1)
    return row


def median_row(rows: list[dict]) -> dict:
    out = {k: statistics.median(r[k] for r in rows) for k in ("lcp", "tbt", "kib", *CATEGORIES)}
    out["range"] = (min(r["performance"] for r in rows), max(r["performance"] for r in rows))
    out["failed"] = sorted({a for r in rows for a in r["failed"]})
    return out


def table(results: list[tuple[str, str, dict]], stock_perf: float) -> str:
    lines = ["| site | page | performance (min–max) | Δ stock | accessibility | best practices | SEO "
             "| LCP | TBT | bytes (gzip) | failing audits |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for site, page, r in results:
        lo, hi = r["range"]
        lines.append(
            f"| {site} | {page} | {r['performance']:.0f} ({lo}–{hi}) | {r['performance'] - stock_perf:+.0f} "
            f"| {r['accessibility']:.0f} | {r['best-practices']:.0f} | {r['seo']:.0f} | {r['lcp']:.1f} s "
            f"| {r['tbt']:.0f} ms | {r['kib']:.0f} KiB | {', '.join(r['failed']) or '–'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="Lighthouse runs per page (median shown)")
    parser.add_argument("--before", metavar="REV", help="also measure the site as built at this git revision")
    parser.add_argument("--pages", nargs="*", help="only these page labels (default: all sampled pages)")
    args = parser.parse_args(argv)
    if not LIGHTHOUSE.is_file():
        sys.exit(f"{LIGHTHOUSE} is missing: run `npm ci` (make lighthouse does)")
    pages = {k: v for k, v in PAGES.items() if not args.pages or k in args.pages}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sites = [("stock Material", stock_material(work), {"one page": ""})]
        if args.before:
            sites.append((f"before ({args.before})", at_revision(args.before, work), pages))
        sites.append(("this site", build(ROOT, work / "site"), pages))
        servers = []
        targets = []
        for name, root, site_pages in sites:
            httpd, url = serve(root)
            servers.append(httpd)
            targets += [(name, label, url + path) for label, path in site_pages.items()]
        rows: dict[tuple[str, str], list[dict]] = {(n, l): [] for n, l, _ in targets}
        # Interleave the runs so that machine load drifting during the run hits every site alike.
        for run in range(args.runs):
            for i, (name, label, url) in enumerate(targets):
                rows[(name, label)].append(lighthouse(url, work / f"report-{run}-{i}.json"))
                print(f"run {run + 1}/{args.runs}: {name} {label}: "
                      f"{rows[(name, label)][-1]['performance']}", file=sys.stderr, flush=True)
        for httpd in servers:
            httpd.shutdown()
    results = [(n, l, median_row(rows[(n, l)])) for n, l, _ in targets]
    stock_perf = results[0][2]["performance"]
    print(f"Lighthouse 12.8.2, mobile profile, Chromium {chromium_version()}, gzip on 127.0.0.1, "
          f"median of {args.runs} runs per page, interleaved")
    print(table(results, stock_perf))
    return 0


def chromium_version() -> str:
    out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout
    return out.split()[1] if len(out.split()) > 1 else "?"


if __name__ == "__main__":
    sys.exit(main())
