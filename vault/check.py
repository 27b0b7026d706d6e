"""The contribution checker: `python -m vault.check` (what `make check` runs).

It checks the vault (front matter, page anatomy, links, snippets, image sizes), then runs the strict
MkDocs build, in which the vault plugin holds the HTML each note becomes against the allow-list
(vault/allowlist.py, vault/htmlcheck.py). Every problem is printed as `path:line: message`; any
problem makes the exit status 1.
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

import nbformat

from . import claims
from .allowlist import is_plain_text
from .source import Source
from .urls import clean_dest_uri
from .vault import Vault
from .wikilinks import Problem

ANATOMY = ["In 30 seconds", "Deep dive", "Code", "Pitfalls", "Follow-ups", "References"]
DIFFICULTIES = ("junior", "middle", "senior")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
MAX_IMAGE_BYTES = 500 * 1024
# Material prints front matter into the page unescaped (a description into <head>, a title into
# <title>, tags into the article), so a note may use only the keys the project defines.
FRONT_MATTER_KEYS = ("question", "tags", "difficulty", "aliases")
PRINTED_KEYS = ("tags", "aliases")  # shown on the page: plain text only
UNSAFE_FILENAME_CHARS = '<>"&'  # a file name is printed in navigation and in the notebook's download link
MAX_ANSWER_WORDS = 150  # CONTENT.md asks for about 120; past this it is no longer a 30-second answer
PLACEHOLDER_RE = re.compile(r"\b(TODO|TBD|FIXME)\b|lorem ipsum", re.I)
LIST_ITEM_RE = re.compile(r"([-*+]|\d+[.)])\s")
LIST_START_RE = re.compile(r"([-*+]|1[.)])\s")  # the items that can interrupt a paragraph in CommonMark
CONFLICT_MARKER_RE = re.compile(r"(<{7}|>{7}) |={7}$")


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.docs = root / "docs"
        self.snippets = root / "snippets"
        self.vault = Vault.load(self.docs, label="docs")
        self.problems: list[Problem] = []
        self.claims_bound: list[tuple[str, claims.StaticClaim, str]] = []  # (snippet, claim, the page showing it)

    def add(self, path: str, line: int, message: str) -> None:
        self.problems.append(Problem(path, line, message))

    def run_vault_checks(self) -> None:
        self.problems += self.vault.link_problems()
        questions: dict[str, list[Source]] = {}
        for uri, src in sorted(self.vault.notes.items()):
            if src.meta_error:
                self.add(src.path, src.meta_error.line, str(src.meta_error))
            self.check_front_matter(src)
            self.check_conflict_markers(src)
            self.check_list_starts(src)
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

    def check_conflict_markers(self, src: Source) -> None:
        for n, line in enumerate(src.masked_body.split("\n"), src.body_line):
            if CONFLICT_MARKER_RE.match(line):
                self.add(src.path, n, "an unresolved merge-conflict marker")

    def check_list_starts(self, src: Source) -> None:
        # Obsidian (CommonMark) lets a bullet list, or a numbered one starting at 1, begin right under a
        # paragraph; Python-Markdown runs those items into the paragraph. A blank line makes both agree.
        block_start = None  # the first line of the current block of non-blank lines
        in_math = False
        for n, line in enumerate(src.masked_body.split("\n"), src.body_line):
            if not line.strip():
                block_start = None
                continue
            if line.strip() == "$$":
                in_math = not in_math
            if in_math:
                continue
            if block_start is None:
                block_start = line
            elif (LIST_START_RE.match(line) and not LIST_ITEM_RE.match(block_start)
                  and block_start[0] not in " \t#|><$" and not block_start.startswith(("!!!", "???"))):
                self.add(src.path, n, "a list must be separated from the paragraph above it by a blank line "
                                      "(the site would run the items into the paragraph)")
                block_start = line

    def check_front_matter(self, src: Source) -> None:
        def line_of_key(key: str) -> int:
            return next((n for n, line in enumerate(src.text.split("\n")[:src.body_line], 1)
                         if line.startswith(f"{key}:")), 1)
        for key, value in src.meta.items():
            if key not in FRONT_MATTER_KEYS:
                self.add(src.path, line_of_key(key), f"front matter: key '{key}' is not allowed (allowed: "
                         f"{', '.join(FRONT_MATTER_KEYS)}); the theme would print it into the page")
            elif key in PRINTED_KEYS and isinstance(value, list):
                for item in value:
                    if isinstance(item, str) and not is_plain_text(item):
                        self.add(src.path, line_of_key(key), f"front matter: {key} must be plain text, without "
                                 f"markup, & or \" (found {item!r})")

    def check_urls(self) -> None:
        seen: dict[str, str] = {}
        for uri in sorted(self.vault.index.all):
            if uri.endswith((".md", ".ipynb")):
                dest = clean_dest_uri(uri)
                if dest in seen:
                    self.add(f"docs/{uri}", 1, f"gets the same URL as docs/{seen[dest]} ({dest})")
                seen.setdefault(dest, uri)

    def check_snippets(self) -> None:
        included: dict[Path, list[claims.Inclusion]] = {}
        for uri, src in sorted(self.vault.notes.items()):
            for inc in claims.inclusions(src.body, src.path, src.body_line_of):
                path = self.snippets / inc.file
                if not path.is_file():
                    self.add(src.path, inc.line, f"snippet file snippets/{inc.file} does not exist")
                    continue
                included.setdefault(path.resolve(), []).append(inc)
                if inc.part and not re.fullmatch(r"[\d,:\-]*", inc.part) \
                        and claims.part_lines(path.read_text(encoding="utf-8"), inc.part) is None:
                    self.add(src.path, inc.line, f"snippet section '{inc.part}' not found in snippets/{inc.file}")
        proofs: dict[Path, claims.SnippetProof] = {}
        for path in sorted(self.snippets.rglob("*")):
            if not path.is_file() or self.is_helper(path):
                continue
            rel = path.relative_to(self.root).as_posix()
            if path.resolve() not in included:
                self.add(rel, 1, "snippet is not included by any page (orphan)")
            text = path.read_text(encoding="utf-8")
            for n, line in enumerate(text.splitlines(), 1):
                if PLACEHOLDER_RE.search(line):
                    self.add(rel, n, "placeholder text in a snippet")
            if path.suffix == ".py":
                proofs[path.resolve()] = self.check_proof(rel, text, included.get(path.resolve(), []))
        self.check_code_sections(included, proofs)

    def check_proof(self, rel: str, text: str, shown_by: list[claims.Inclusion]) -> claims.SnippetProof:
        """A snippet asserts or claims something, and every number it claims is still on its page."""
        try:
            proof = claims.read_proof(text)
        except SyntaxError as exc:
            self.add(rel, exc.lineno or 1, f"snippet does not parse: {exc.msg}")
            return claims.SnippetProof((), (), ())
        for line, message in proof.problems:
            self.add(rel, line, message)
        if not proof.proof_lines:
            self.add(rel, 1, "the snippet asserts and claims nothing: assert what its page says, and bind "
                             "the numbers the page quotes with claim()")
        pages = sorted({inc.page for inc in shown_by})
        for c in proof.claims:
            shown_on = [p for p in pages if claims.shows(self.page_body(p), c.text) is not None]
            if shown_on:
                self.claims_bound.append((rel, c, shown_on[0]))
            elif pages:
                self.add(rel, c.line, f"claim '{c.text}': {' or '.join(pages)} no longer shows this text")
        return proof

    def page_body(self, page: str) -> str:
        return self.vault.notes[page.removeprefix(self.vault.label + "/")].body

    def check_code_sections(self, included: dict[Path, list[claims.Inclusion]],
                            proofs: dict[Path, claims.SnippetProof]) -> None:
        """A question page's Code section shows at least one part that asserts or claims."""
        by_page: dict[str, list[tuple[Path, claims.Inclusion]]] = {}
        for path, incs in included.items():
            for inc in incs:
                by_page.setdefault(inc.page, []).append((path, inc))
        for uri, src in sorted(self.vault.notes.items()):
            if not self.vault.is_question(uri):
                continue
            h2 = [h for h in src.headings if h.level == 2]
            code = next((i for i, h in enumerate(h2) if h.text == "Code"), None)
            if code is None:
                continue  # the anatomy check reports the missing section
            end = h2[code + 1].line if code + 1 < len(h2) else 10**9
            shown = [(path, inc) for path, inc in by_page.get(src.path, []) if h2[code].line < inc.line < end]
            if not any(self.part_proves(path, inc.part, proofs.get(path)) for path, inc in shown):
                self.add(src.path, h2[code].line, "the Code section shows no snippet part that asserts or "
                                                  "claims: show the code that proves the page")

    @staticmethod
    def part_proves(path: Path, part: str, proof: claims.SnippetProof | None) -> bool:
        if proof is None:
            return False
        lines = claims.part_lines(path.read_text(encoding="utf-8"), part if not re.fullmatch(r"[\d,:\-]*", part)
                                  else "")
        return lines is not None and any(n in lines for n in proof.proof_lines)

    @staticmethod
    def is_helper(path: Path) -> bool:
        """Shared helpers (`_name.py`), caches and test configuration are not snippets."""
        return path.name.startswith("_") or "__pycache__" in path.parts or path.suffix == ".pyc" \
            or path.name == "conftest.py"

    def check_files(self) -> None:
        for path in sorted(self.docs.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if any(c in path.name for c in UNSAFE_FILENAME_CHARS):
                self.add(rel, 1, f"file name has one of {UNSAFE_FILENAME_CHARS}: the theme prints file names unescaped")
            if path.suffix.lower() in IMAGE_SUFFIXES and path.stat().st_size > MAX_IMAGE_BYTES:
                self.add(rel, 1, f"image is {path.stat().st_size // 1024} KB; "
                                 f"the limit is {MAX_IMAGE_BYTES // 1024} KB")
            if path.suffix == ".ipynb":
                self.check_notebook(path, rel)

    def check_notebook(self, path: Path, rel: str) -> None:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            self.add(rel, exc.lineno, f"notebook is not valid JSON: {exc.msg}")
            return
        try:  # the schema is an allow-list too: nbconvert prints cell ids and metadata into the page
            nbformat.validate(nbformat.from_dict(nb))
        except nbformat.ValidationError as exc:
            self.add(rel, 1, f"notebook does not follow the nbformat schema: {exc.message}")
        for n, cell in enumerate(nb.get("cells", []), 1):
            text = "".join(cell.get("source", []))
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
            own = re.match(r"^(docs/.+?):(\d+): (.*)$", text)
            if own:  # the vault plugin's own messages (the HTML allow-list) name the file and line
                self.add(own.group(1), int(own.group(2)), own.group(3))
                continue
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
    pages = {page for *_, page in checker.claims_bound}
    print(f"vault OK: {len(checker.vault.notes)} notes, {len(checker.claims_bound)} numbers bound to their code "
          f"on {len(pages)} pages" + ("" if args.no_build else ", strict build OK"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
