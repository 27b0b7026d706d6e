"""Synthetic vaults shaped like the real one, for the build benchmark.

Each note has front matter, the six-section anatomy, a formula, a table, a code block and eight
wikilinks (one to a heading). Notes are spread over ten section folders, each with an index page
that lists them, and a home page that links the sections, as in docs/.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

SECTIONS = 10
LINKS_PER_NOTE = 8


def note_name(i: int) -> str:
    return f"Synthetic note {i:05d}"


def note_text(i: int, n: int, rng: random.Random) -> str:
    targets = [note_name(rng.randrange(n)) for _ in range(LINKS_PER_NOTE)]
    links = ", ".join(f"[[{t}]]" for t in targets[1:]) + f", [[{targets[0]}#Deep dive]]"
    return f"""---
question: Synthetic question number {i}, about topic {i % 97}?
tags: [synthetic, topic-{i % 13}]
difficulty: {("junior", "middle", "senior")[i % 3]}
aliases: [synthetic alias {i}]
---

# Synthetic question number {i}, about topic {i % 97}?

## In 30 seconds

A short answer of about the length a real one has. It names the mechanism, the trade-off and a
number, such as a cost of $O(n \\log n)$ or a ratio of {i % 7 + 2}:1, and says when to use it.

## Deep dive

### Mechanism

The mechanism in two paragraphs. Related: {links}.

$$
\\mathcal{{L}} = -\\sum_i y_i \\log \\hat y_i + \\lambda \\lVert w \\rVert_2^2
$$

| option | cost | when |
|---|---|---|
| first | low | small data |
| second | high | large data |

### Comparison

A second part of the deep dive with a few sentences of prose, so that pages weigh what real ones do.

## Code

```python
def answer(x: float) -> float:
    return {i} * x
```

## Pitfalls

- A common wrong answer, and why it is wrong.
- Another trap.

## Follow-ups

- **A follow-up question?** Its short answer.

## References

- A. Author. *A paper title.* Venue, 2020.
"""


def make_vault(dest: Path, notes: int, real_root: Path, seed: int = 0) -> Path:
    """Write a project (mkdocs.yml, overrides, assets, docs) with `notes` synthetic notes."""
    rng = random.Random(seed)
    if dest.exists():
        shutil.rmtree(dest)
    docs = dest / "docs"
    shutil.copytree(real_root / "docs" / "assets", docs / "assets")
    shutil.copytree(real_root / "overrides", dest / "overrides")
    shutil.copy(real_root / "mkdocs.yml", dest / "mkdocs.yml")
    (docs / "tags.md").write_text("# Tags\n\n<!-- material/tags -->\n", encoding="utf-8")
    home = ["# Synthetic vault", ""]
    for s in range(SECTIONS):
        folder = docs / f"section-{s:02d}"
        folder.mkdir(parents=True)
        members = range(s, notes, SECTIONS)
        index = [f"# Section {s}", ""] + [f"1. [[{note_name(i)}]]" for i in members]
        (folder / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
        home.append(f"- [[section-{s:02d}/index|Section {s}]]")
        for i in members:
            (folder / f"{note_name(i)}.md").write_text(note_text(i, notes, rng), encoding="utf-8")
    (docs / "index.md").write_text("\n".join(home) + "\n", encoding="utf-8")
    return dest
