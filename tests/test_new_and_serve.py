"""The contributor path: `make new` scaffolds a page the checker holds back, and `make serve` serves."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

from vault.check import main as check_main
from vault.new import main as new_main

from .conftest import ROOT

# A topic the vault does not have yet (a scaffold may not reuse an existing note's name).
QUESTION = "What is a deformable convolution, and where is it used?"


def test_scaffolded_page_is_well_formed_but_rejected_until_written(project, capsys):
    assert new_main(["--root", str(project), "--section", "cv-deep-learning", "--name", "Deformable convolution",
                     "--question", QUESTION]) == 0
    page = project / "docs/cv-deep-learning/Deformable convolution.md"
    assert page.is_file() and (project / "snippets/cv-deep-learning/deformable_convolution.py").is_file()
    assert f"[[Deformable convolution|{QUESTION}]]" in (project / "docs/cv-deep-learning/index.md").read_text()
    capsys.readouterr()
    assert check_main(["--root", str(project), "--no-build"]) == 1
    problems = [l for l in capsys.readouterr().out.splitlines()
                if "Deformable convolution.md" in l or "deformable_convolution" in l]
    unwritten = ("placeholder", "asserts and claims nothing", "shows no snippet part that asserts")
    # only what is not yet written (the TODOs, and code that proves nothing yet), nothing malformed
    assert problems and all(any(u in p for u in unwritten) for p in problems), problems


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_serves_the_site(tmp_path):
    from urllib.parse import urlparse

    from mkdocs.config import load_config
    base = urlparse(load_config(str(ROOT / "mkdocs.yml"))["site_url"]).path  # mkdocs serve mounts the site there
    port = free_port()
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", TMPDIR=str(tmp_path))  # where serve puts its site
    proc = subprocess.Popen([sys.executable, "-m", "vault.serve", "-a", f"127.0.0.1:{port}", "--no-livereload"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, body = time.monotonic() + 120, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{base}classical-cv/ransac/", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        why = proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "timeout"
        assert "How does the RANSAC algorithm help in model fitting?" in body, why
        assert [p.name for p in tmp_path.iterdir()], "serve built its site somewhere other than TMPDIR"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # Stopped as a test, `make bench` or a process manager stops it (SIGTERM), it removes its site.
    assert list(tmp_path.iterdir()) == []


def test_serve_stops_on_sigterm_in_the_middle_of_a_build(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "vault.serve", "-a", f"127.0.0.1:{free_port()}", "--no-livereload"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.iterdir()) and time.monotonic() < deadline:  # its site directory: building
            time.sleep(0.1)
        time.sleep(2)  # well into the first build, which takes ten seconds or more
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.terminate()
        proc.wait(timeout=30)  # a build that caught the signal as a build error would serve on
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.iterdir()) == []
