"""Scaffold a question page and its snippet: `make new SECTION=... NAME=... QUESTION=...`.

The page gets the front matter and the six sections of the anatomy with TODO markers, and is
added to its section index. `make check` rejects TODO markers, so the page cannot be merged
until every section is written.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from .check import ANATOMY
from .vault import Vault

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = set('?/\\:#|^[]')


def page_text(question: str, snippet: str) -> str:
    meta = {"question": question, "tags": ["TODO"], "difficulty": "middle", "aliases": []}
    parts = ["---", yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip(), "---", "",
             f"# {question}", ""]
    for name in ANATOMY:
        parts += [f"## {name}", ""]
        if name == "Code":
            parts += ["TODO: say what the code proves.", "", "```python", f'--8<-- "{snippet}:main"', "```", ""]
        else:
            parts += ["TODO", ""]
    return "\n".join(parts)


SNIPPET = '''"""TODO: what this snippet proves, in one line."""
from __future__ import annotations

import numpy as np

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:main]
# TODO: the code the page shows. Assert every claim the page makes, and bind each number the page
# quotes with claim("the text as the page shows it", value), e.g. claim("11.7%", dead_share).
# --8<-- [end:main]
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", required=True)
    parser.add_argument("--name", required=True, help="short note title; also the file name")
    parser.add_argument("--question", required=True, help="the question, verbatim")
    parser.add_argument("--root", type=Path, default=ROOT, help="project root")
    args = parser.parse_args(argv)
    root = args.root
    vault = Vault.load(root / "docs")
    if args.section not in vault.sections:
        parser.error(f"unknown section {args.section!r}; one of: {', '.join(vault.sections)}")
    if FORBIDDEN & set(args.name) or not args.name.strip():
        parser.error("NAME may not contain any of ? / \\ : # | ^ [ ]")
    resolved, _ = vault.index.resolve(args.name)
    if resolved:
        parser.error(f"a note named {args.name!r} already exists: docs/{resolved}")
    page = root / "docs" / args.section / f"{args.name}.md"
    snippet_rel = f"{args.section}/{re.sub(r'[^0-9a-z]+', '_', args.name.lower()).strip('_')}.py"
    snippet = root / "snippets" / snippet_rel
    if snippet.exists():
        parser.error(f"snippets/{snippet_rel} already exists")
    page.write_text(page_text(args.question, snippet_rel), encoding="utf-8")
    snippet.parent.mkdir(parents=True, exist_ok=True)
    snippet.write_text(SNIPPET, encoding="utf-8")
    index = root / "docs" / args.section / "index.md"
    text = index.read_text(encoding="utf-8").rstrip("\n")
    link = f"[[{args.name}|{args.question}]]"
    planned = re.search(rf"^(\d+\. ){re.escape(args.question)}.*$", text, re.M)
    if planned:  # the index already lists the question as not yet written: link it in place
        text = text[:planned.start()] + planned.group(1) + link + text[planned.end():]
    else:
        number = len(re.findall(r"^\d+\. ", text, re.M)) + 1
        text += f"\n{number}. {link}"
    index.write_text(text + "\n", encoding="utf-8")
    for path in (page, snippet, index):
        print(f"wrote {path.relative_to(root)}")
    print("Now fill every TODO; `make check` tells you what is left.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
