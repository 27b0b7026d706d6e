"""`make serve`: MkDocs' development server, rebuilding incrementally and showing build errors on the page.

An adapter over `mkdocs.commands.serve.serve`, written for MkDocs 1.6.1 (constraints.txt pins it):
the same LiveReloadServer, with three changes.

- A rebuild reuses what the builds before it computed (vault/incremental.py).
- It watches what pages are made of, not only docs/ and mkdocs.yml: snippets/ and overrides/
  rebuild; a change to vault/ (the plugin's own code) restarts the server, since Python cannot
  reload a module in place.
- A build that fails still reaches the browser. MkDocs' serve keeps the old pages and leaves the
  browser waiting ("the server will appear stuck"); here every page of the new build carries a
  banner listing the problems as `path:line: message`, the terminal prints the same lines, and the
  browser reloads. The next good build clears it.
"""
from __future__ import annotations

import argparse
import hashlib
import html
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.livereload import LiveReloadServer, _serve_url

from . import incremental

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_CODE = Path(__file__).resolve().parent
BODY_RE = re.compile(r"<body\b[^>]*>")
BANNER_ID = "kb-build-errors"
log = logging.getLogger("mkdocs.vault.serve")


class Problems(logging.Handler):
    """The warnings and errors of one build, as the terminal shows them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def banner(messages: list[str]) -> str:
    items = "".join(f"<li><code>{html.escape(m)}</code></li>" for m in messages)
    return (f'<div id="{BANNER_ID}" class="kb-build-errors" role="alert"><p><strong>This build failed '
            f"with {len(messages)} problem(s).</strong> The page may be out of date until they are fixed:"
            f"</p><ul>{items}</ul></div>")


def show_problems(site_dir: Path, messages: list[str]) -> None:
    """Put the banner at the top of every page the failed build wrote (and of the 404 page)."""
    block = banner(messages)
    pages = list(site_dir.rglob("*.html"))
    for page in pages:
        text = page.read_text(encoding="utf-8")
        m = BODY_RE.search(text)
        if m:
            page.write_text(text[:m.end()] + block + text[m.end():], encoding="utf-8")
    if not (site_dir / "404.html").exists():  # the build stopped before writing pages
        (site_dir / "404.html").write_text(f"<!doctype html><title>Build failed</title><body>{block}</body>",
                                           encoding="utf-8")


def code_digest() -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(PLUGIN_CODE.glob("*.py")))).hexdigest()


def serve(config_file: Path, dev_addr: str, livereload: bool = True) -> None:
    incremental.install()
    site_dir = Path(tempfile.mkdtemp(prefix="mkdocs_"))
    project = config_file.parent
    started_with = code_digest()

    def get_config():
        return load_config(str(config_file), site_dir=str(site_dir), dev_addr=dev_addr)

    config = get_config()
    config.plugins.on_startup(command="serve", dirty=False)
    host, port = config.dev_addr
    mount_path = urlsplit(config.site_url or "/").path
    serve_url = _serve_url(host, port, mount_path)

    def builder(config=None):
        if code_digest() != started_with:
            log.info("The plugin's code changed: restarting")
            shutil.rmtree(site_dir, ignore_errors=True)
            os.execv(sys.executable, [sys.executable, "-m", "vault.serve", *sys.argv[1:]])
        log.info("Building documentation...")
        config = config or get_config()
        config.site_url = serve_url
        problems = Problems()
        logging.getLogger("mkdocs").addHandler(problems)
        try:
            build(config, serve_url=serve_url)
        except Exception as error:  # a strict build's Abort, or a plugin's exception (Ctrl-C and SIGTERM
            # are not Exceptions: they stop the server even in the middle of a build)
            if not problems.messages:
                problems.messages.append(f"{type(error).__name__}: {error}")
            show_problems(site_dir, problems.messages)
            log.error(f"Build failed with {len(problems.messages)} problem(s); the pages show them in a banner")
        finally:
            logging.getLogger("mkdocs").removeHandler(problems)

    # MkDocs polls the watched files every 0.5 s. A snapshot of a 1,000-note docs/ took about 20 ms
    # here, so polling at 0.2 s costs about a tenth of a core and cuts the average wait for a save
    # to be noticed from 0.25 s to 0.1 s.
    server = LiveReloadServer(builder=builder, host=host, port=port, root=str(site_dir), mount_path=mount_path,
                              polling_interval=0.2)

    def error_page(code):
        page = site_dir / f"{code}.html"
        return page.read_bytes() if code in (404, 500) and page.is_file() else None

    server.error_handler = error_page
    try:
        builder(config)
        if livereload:
            for path in [config.docs_dir, config.config_file_path, project / "snippets", project / "overrides",
                         PLUGIN_CODE]:
                if path and Path(path).exists():
                    server.watch(str(path))
        try:
            server.serve()
        except KeyboardInterrupt:
            log.info("Shutting down...")
        finally:
            server.shutdown()
    finally:
        config.plugins.on_shutdown()
        shutil.rmtree(site_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--config-file", type=Path, default=Path("mkdocs.yml"))
    parser.add_argument("-a", "--dev-addr", default="127.0.0.1:8000")
    parser.add_argument("--no-livereload", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)-7s -  %(message)s")
    # Stopped by SIGTERM (a test, `make bench`, a process manager), unwind as after Ctrl-C, so the
    # site directory in the temp folder is removed; by default the process would just end.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    serve(args.config_file.resolve(), args.dev_addr, livereload=not args.no_livereload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
