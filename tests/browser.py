"""Build the site, serve it on 127.0.0.1, and drive Debian's Chromium with Playwright.

Shared by the browser tests. Nothing here reaches outside this machine: every request to another
origin is recorded and aborted before it leaves the browser.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def build_site(project: Path, dest: Path, offline: bool = False, site_url: str | None = None) -> Path:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    if offline:
        env["OFFLINE"] = "true"
    if site_url:
        env["KB_SITE_URL"] = site_url
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(dest)],
                          cwd=project, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dest


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "max-age=600")  # as GitHub Pages serves a site
        super().end_headers()


class Server:
    """A static file server for a built site on an ephemeral loopback port."""

    def __init__(self, root: Path):
        handler = functools.partial(QuietHandler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# Every Content-Security-Policy violation, in any frame, reported on the console with this prefix.
CSP_PREFIX = "CSP violation: "
REPORT_CSP = f"""document.addEventListener("securitypolicyviolation", e => console.error(
    "{CSP_PREFIX}" + e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " " + (e.sample || "")));"""


@dataclass
class Visit:
    """What one page did while loading: requests to other origins, CSP violations, console errors,
    uncaught errors."""
    foreign_requests: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"foreign request: {u}" for u in self.foreign_requests] + \
               [f"CSP violation: {v}" for v in self.csp_violations] + \
               [f"console error: {e}" for e in self.console_errors]


def same_origin(url: str, origin: str) -> bool:
    u = urlparse(url)
    if u.scheme in ("data", "blob", "about"):
        return True
    if origin.startswith("file:"):
        return u.scheme == "file"
    o = urlparse(origin)
    return (u.scheme, u.netloc) == (o.scheme, o.netloc)


def watch(page, origin: str) -> Visit:
    """Record (and abort) every request leaving `origin`, every CSP violation, every console or
    page error."""
    visit = Visit()

    def console(message):
        if message.type != "error":
            return
        if message.text.startswith(CSP_PREFIX):
            visit.csp_violations.append(message.text.removeprefix(CSP_PREFIX))
        elif "Content Security Policy" in message.text:  # Chromium's own line on a violation
            visit.csp_violations.append(message.text)
        else:
            visit.console_errors.append(message.text)

    def route(r):
        if same_origin(r.request.url, origin):
            r.continue_()
        else:
            visit.foreign_requests.append(r.request.url)
            r.abort()

    page.add_init_script(REPORT_CSP)  # runs before the page's scripts, in every frame, whatever the CSP
    page.route("**/*", route)
    page.on("console", console)
    page.on("pageerror", lambda e: visit.console_errors.append(str(e)))
    return visit


def settle(page, timeout_ms: int = 15000, network_idle: bool = True) -> bool:
    """Wait until the page's math (typeset at build time) and lazily drawn diagrams are there. False if not.
    `network_idle=False` waits for the load event instead of 500 ms without requests: for a caller that
    keeps the page open long after (requests are recorded whenever they happen)."""
    page.wait_for_load_state("networkidle" if network_idle else "load")
    # Diagrams are drawn when the first one nears the viewport (kb.js), as a reader scrolls to it.
    page.evaluate("() => { const d = document.querySelector('div.kb-mermaid'); if (d) d.scrollIntoView(); }")
    try:
        page.wait_for_function(
            """() => [...document.querySelectorAll('.arithmatex')].every(e => e.querySelector('.katex'))
                   && [...document.querySelectorAll('div.kb-mermaid')].every(e => e.querySelector('svg'))""",
            timeout=timeout_ms,
        )
        return True
    except Exception:  # playwright's TimeoutError
        return False


def raw_math(page) -> list[str]:
    """TeX delimiters left in the article's prose (code blocks aside): math that did not render.
    In notebook cells, where TeX is written between dollars, a lone $ counts too."""
    text, cells = page.evaluate("""() => {
        const strip = el => { const c = el.cloneNode(true);
            c.querySelectorAll('pre, code, script, .katex').forEach(e => e.remove()); return c.textContent; };
        return [strip(document.querySelector('article')),
                [...document.querySelectorAll('.jp-RenderedMarkdown')].map(strip).join(' ')];
    }""")
    found = [frag for frag in ("$$", "\\(", "\\[", "\\begin{") if frag in text]
    return found + (["$"] if "$" in cells and "$$" not in found else [])
