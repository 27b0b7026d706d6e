"""The contribution checker: `python -m vault.check` (what `make check` runs).

It checks the vault (front matter, page anatomy, links, snippets, unsafe HTML, image sizes), then
runs the strict MkDocs build. Every problem is printed as `path:line: message`; any problem makes
the exit status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .source import Source
from .urls import clean_dest_uri
from .vault import Vault
from .wikilinks import Problem

ANATOMY = ["In 30 seconds", "Deep dive", "Code", "Pitfalls", "Follow-ups", "References"]
DIFFICULTIES = ("junior", "middle", "senior")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
MAX_IMAGE_BYTES = 500 * 1024
SNIPPET_RE = re.compile(r"""^[ \t>]*-{1,}8<-{1,}[ \t]+(["'])(?P<spec>[^"']+)\1[ \t]*$""", re.M)
SECTION_MARK_RE = re.compile(r"-{1,}8<-{1,}[ \t]*\[[ \t]*(start|end)[ \t]*:[ \t]*([a-z][-_0-9a-z]*)[ \t]*\]")
UNSAFE_HTML = [
    (re.compile(r"<\s*script\b", re.I), "raw <script> is not allowed"),
    (re.compile(r"<\s*iframe\b", re.I), "raw <iframe> is not allowed"),
    (re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I), "inline event handler (on...=) is not allowed"),
    (re.compile(r"javascript\s*:", re.I), "javascript: URLs are not allowed"),
    # Readers' privacy: a page may not make the browser fetch anything from another site.
    (re.compile(r"!\[[^\]]*\]\(\s*<?(https?:)?//", re.I), "remote image: commit the file under docs/assets/ instead"),
    (re.compile(r"<(img|video|audio|source|link|object|embed)\b[^>]*\b(src|href|data)\s*=\s*[\"']?(https?:)?//", re.I),
     "remote resource: commit the file under docs/assets/ instead"),
]
MAX_ANSWER_WORDS = 150  # CONTENT.md asks for about 120; past this it is no longer a 30-second answer
PLACEHOLDER_RE = re.compile(r"\b(TODO|TBD|FIXME)\b|lorem ipsum", re.I)


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.docs = root / "docs"
        self.snippets = root / "snippets"
        self.vault = Vault.load(self.docs, label="docs")
        self.problems: list[Problem] = []

    def add(self, path: str, line: int, message: str) -> None:
        self.problems.append(Problem(path, line, message))

    def run_vault_checks(self) -> None:
        self.problems += self.vault.link_problems()
        questions: dict[str, list[Source]] = {}
        for uri, src in sorted(self.vault.notes.items()):
            if src.meta_error:
                self.add(src.path, src.meta_error.line, str(src.meta_error))
            self.check_unsafe_html(src.path, src.masked_body, src.body_line)
            if self.vault.is_question(uri):
                self.check_question(uri, src)
                q = src.meta.get("question")
                if isinstance(q, str):
                    questions.setdefault(" ".join(q.lower().split()), []).append(src)
        for sources in questions.values():
            if len(sources) > 1:
                for src in sources:
                    others = ", ".join(s.path for s in sources if s is not src)
                    self.add(src.path, 1, f"the same question is also asked by {others}")
        self.check_urls()
        self.check_snippets()
        self.check_files()

    def check_question(self, uri: str, src: Source) -> None:
        if src.meta_error:
            return
        if not src.meta:
            self.add(src.path, 1, "missing front matter (question, tags, difficulty)")
            return
        q = src.meta.get("question")
        if not isinstance(q, str) or not q.strip():
            self.add(src.path, 1, "front matter: 'question' is missing or not a string")
        tags = src.meta.get("tags")
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
            self.add(src.path, 1, "front matter: 'tags' must be a non-empty list of strings")
        elif any(PLACEHOLDER_RE.search(t) for t in tags):
            self.add(src.path, 1, "front matter: placeholder tag")
        if src.meta.get("difficulty") not in DIFFICULTIES:
            self.add(src.path, 1, f"front matter: 'difficulty' must be one of {', '.join(DIFFICULTIES)}")
        aliases = src.meta.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            self.add(src.path, 1, "front matter: 'aliases' must be a list of strings")
        h1 = src.h1
        if h1 is None:
            self.add(src.path, src.body_line, "no H1: the page must start with '# <question>'")
        elif isinstance(q, str) and " ".join(h1.text.split()) != " ".join(q.split()):
            self.add(src.path, h1.line, "the H1 must be the question from the front matter, verbatim")
        self.check_anatomy(src)
        section = self.vault.section_of(uri)
        if uri not in self.vault.listed_in_index(section):
            self.add(src.path, 1, f"not listed in the section index docs/{section}/index.md")

    def check_anatomy(self, src: Source) -> None:
        h2 = [h for h in src.headings if h.level == 2]
        names = [h.text for h in h2]
        missing = [name for name in ANATOMY if name not in names]
        for name in missing:
            self.add(src.path, src.body_line, f"missing section '## {name}'")
        present = [n for n in names if n in ANATOMY]
        if not missing and present != ANATOMY:
            self.add(src.path, h2[0].line, "sections must come in the order: " + ", ".join(ANATOMY))
        lines = src.body.split("\n")
        for i, h in enumerate(h2):
            if h.text not in ANATOMY:
                continue
            start = h.line - src.body_line + 1
            end = (h2[i + 1].line - src.body_line) if i + 1 < len(h2) else len(lines)
            content = "\n".join(lines[start:end]).strip()
            if not content:
                self.add(src.path, h.line, f"section '## {h.text}' is empty")
            words = len(content.split())
            if h.text == ANATOMY[0] and words > MAX_ANSWER_WORDS:
                self.add(src.path, h.line, f"the 30-second answer has {words} words; keep it to about 120 "
                                           f"(the limit is {MAX_ANSWER_WORDS})")
        for m in PLACEHOLDER_RE.finditer(src.masked_body):
            self.add(src.path, src.body_line_of(m.start()), f"placeholder text '{m.group(0)}'")

    def check_unsafe_html(self, path: str, text: str, first_line: int) -> None:
        for pattern, message in UNSAFE_HTML:
            for m in pattern.finditer(text):
                self.add(path, first_line + text.count("\n", 0, m.start()), message)

    def check_urls(self) -> None:
        seen: dict[str, str] = {}
        for uri in sorted(self.vault.index.all):
            if uri.endswith((".md", ".ipynb")):
                dest = clean_dest_uri(uri)
                if dest in seen:
                    self.add(f"docs/{uri}", 1, f"gets the same URL as docs/{seen[dest]} ({dest})")
                seen.setdefault(dest, uri)

    def check_snippets(self) -> None:
        included: set[Path] = set()
        for uri, src in sorted(self.vault.notes.items()):
            for m in SNIPPET_RE.finditer(src.body):
                line = src.body_line_of(m.start())
                spec = m.group("spec").strip()
                name, _, section = spec.partition(":")
                path = self.snippets / name
                if not path.is_file():
                    self.add(src.path, line, f"snippet file snippets/{name} does not exist")
                    continue
                included.add(path.resolve())
                if section and not re.fullmatch(r"[\d,:\-]*", section):
                    marks = SECTION_MARK_RE.findall(path.read_text(encoding="utf-8"))
                    if ("start", section) not in marks or ("end", section) not in marks:
                        self.add(src.path, line, f"snippet section '{section}' not found in snippets/{name}")
        for path in sorted(self.snippets.rglob("*")):
            if not path.is_file() or self.is_helper(path):
                continue
            rel = path.relative_to(self.root).as_posix()
            if path.resolve() not in included:
                self.add(rel, 1, "snippet is not included by any page (orphan)")
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if PLACEHOLDER_RE.search(line):
                    self.add(rel, n, "placeholder text in a snippet")

    @staticmethod
    def is_helper(path: Path) -> bool:
        """Shared helpers (`_name.py`), caches and test configuration are not snippets."""
        return path.name.startswith("_") or "__pycache__" in path.parts or path.suffix == ".pyc" \
            or path.name == "conftest.py"

    def check_files(self) -> None:
        for path in sorted(self.docs.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.suffix.lower() in IMAGE_SUFFIXES and path.stat().st_size > MAX_IMAGE_BYTES:
                self.add(rel, 1, f"image is {path.stat().st_size // 1024} KB; the limit is {MAX_IMAGE_BYTES // 1024} KB")
            if path.suffix == ".ipynb":
                self.check_notebook(path, rel)

    def check_notebook(self, path: Path, rel: str) -> None:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            self.add(rel, exc.lineno, f"notebook is not valid JSON: {exc.msg}")
            return
        for n, cell in enumerate(nb.get("cells", []), 1):
            text = "".join(cell.get("source", []))
            if cell.get("cell_type") == "markdown":
                for pattern, message in UNSAFE_HTML:
                    if pattern.search(text):
                        self.add(rel, 1, f"cell {n}: {message}")
            if cell.get("cell_type") == "code" and text.strip() and cell.get("execution_count") is None:
                self.add(rel, 1, f"cell {n} has not been run: commit notebooks with their outputs "
                                 "(make notebooks)")

    # --- the strict build ------------------------------------------------------------------

    def run_build(self) -> None:
        with tempfile.TemporaryDirectory() as site:
            env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
            proc = subprocess.run(
                [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(self.root / "mkdocs.yml"),
                 "-d", site], capture_output=True, text=True, env=env, cwd=self.root)
        messages = [line for line in proc.stderr.splitlines() + proc.stdout.splitlines()
                    if line.startswith(("WARNING", "ERROR"))]
        for message in messages:
            text = re.sub(r"^(WARNING|ERROR)\s+-\s+", "", message)
            if re.match(r"^docs/\S+:\d+: ", text):
                continue  # the vault plugin's own messages, already found by the vault checks
            self.add(*self.locate(text), f"mkdocs: {text}")
        if proc.returncode != 0 and not messages:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            self.add("mkdocs.yml", 1, "the strict build failed: " + " | ".join(tail))

    def locate(self, message: str) -> tuple[str, int]:
        """Best file and line for a build message: the doc it names, at the line holding the link."""
        m = re.search(r"Doc file '([^']+)'", message) or re.search(r"'([^']+\.(?:md|ipynb))'", message)
        if not m:
            return "mkdocs.yml", 1
        uri = m.group(1)
        path = self.docs / uri
        target = re.search(r"link '([^']+)'", message)
        if target and path.is_file():
            needle = target.group(1).split("#")[-1] if "#" in target.group(1) else target.group(1)
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if needle and needle in line:
                    return f"docs/{uri}", n
        return f"docs/{uri}", 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (holds mkdocs.yml)")
    parser.add_argument("--no-build", action="store_true", help="skip the strict MkDocs build")
    args = parser.parse_args(argv)
    checker = Checker(args.root.resolve())
    checker.run_vault_checks()
    if not args.no_build and not checker.problems:
        checker.run_build()  # a broken vault would only repeat itself as build warnings
    for problem in checker.problems:
        print(problem)
    if checker.problems:
        print(f"{len(checker.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"vault OK: {len(checker.vault.notes)} notes" + ("" if args.no_build else ", strict build OK"),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
