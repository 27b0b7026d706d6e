"""Wikilinks: resolution as in Obsidian, code left alone, heading ids as MkDocs makes them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from vault.source import Source, mask_code
from vault.wikilinks import LinkIndex, find_wikilinks, render

from .conftest import add_note


def test_mask_code_blanks_fences_and_inline_code_only():
    text = "a [[A]]\n```python\ny = [[B]]\n```\nb `x[[C]]` c\n~~~~\n```\n[[D]]\n~~~~\n[[E]]\n"
    masked = mask_code(text)
    assert len(masked) == len(text) and masked.count("\n") == text.count("\n")
    assert "[[A]]" in masked and "[[E]]" in masked
    for hidden in ("[[B]]", "[[C]]", "[[D]]"):
        assert hidden not in masked


def test_resolution_follows_obsidian():
    index = LinkIndex(["a/RANSAC.md", "b/Loss. SS and OD.md", "b/Other.md", "c/Other.md", "img/fig.png"])
    assert index.resolve("ransac") == ("a/RANSAC.md", None)              # case-insensitive
    assert index.resolve("Loss. SS and OD.md") == ("b/Loss. SS and OD.md", None)
    assert index.resolve("c/Other") == ("c/Other.md", None)              # a path picks one
    assert index.resolve("fig.png") == ("img/fig.png", None)
    assert "ambiguous" in index.resolve("Other")[1]
    assert "matches no note" in index.resolve("Loss-SS-and-OD")[1]      # no roamlinks-style fuzzing


def rendered(body: str, files: dict[str, str]) -> tuple[str, list]:
    sources = {uri: Source.parse(uri, text) for uri, text in files.items()}
    index = LinkIndex(list(files))
    src = Source.parse("docs/a/Page.md", body)
    return render("a/Page.md", src, find_wikilinks(src), index, lambda uri: sources[uri].headings)


def test_link_text_and_targets():
    body = "[[Loss. SS and OD#Focal loss]] [[Loss. SS and OD|the loss map]] [[#Here]]\n\n## Here\n"
    files = {"a/Page.md": body, "n/Loss. SS and OD.md": "# Losses\n\n## Focal loss\n\n## Focal loss\n"}
    out, problems = rendered(body, files)
    assert problems == []
    assert "[Loss. SS and OD › Focal loss](<../n/Loss. SS and OD.md#focal-loss>)" in out
    assert "[the loss map](<../n/Loss. SS and OD.md>)" in out
    assert "[Here](<#here>)" in out


def test_image_embed_keeps_size():
    out, problems = rendered("![[fig.png|300]]", {"a/Page.md": "", "img/fig.png": ""})
    assert problems == [] and out == '![fig.png](<../img/fig.png>){ width="300" }'


def test_problems_carry_the_file_line():
    out, problems = rendered("---\nx: 1\n---\n\nline 5\n[[Nowhere]] and [[Page#Missing]]\n", {"a/Page.md": ""})
    assert [str(p) for p in problems] == [
        "docs/a/Page.md:6: wikilink [[Nowhere]] matches no note",
        "docs/a/Page.md:6: wikilink [[Page#Missing]]: Page has no heading 'Missing'",
    ]
    assert "[[Nowhere]]" in out  # left as written; the strict build fails on the warning


def build(project: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(project / "site")],
                          cwd=project, env=env, capture_output=True, text=True)


PAGE = """---
question: A test page?
tags: [test]
difficulty: junior
---

# A test page?

Prose link to [[Synthetic note 00001#Deep dive]] and inline code `a[[0]]` and `y = [[Synthetic note 00001]]`.

```python
y = [[Synthetic note 00001]]
z = a[[0]]
```
"""


def add_page(project: Path, body: str) -> None:
    add_note(project, "section-01/Test page.md", body)


def test_build_keeps_code_literal_and_links_prose(small_project):
    project = small_project
    add_page(project, PAGE)
    proc = build(project)
    assert proc.returncode == 0, proc.stderr
    html = (project / "site/section-01/test-page/index.html").read_text(encoding="utf-8")
    code_blocks = re.findall(r"<code[^>]*>.*?</code>", html, re.S)
    code_text = re.sub(r"<[^>]+>", "", "".join(code_blocks))
    assert "y = [[Synthetic note 00001]]" in code_text and "a[[0]]" in code_text
    # Material adds line anchors (#__codelineno-…) to code; no other link may appear inside code.
    assert not any(re.search(r'<a [^>]*href="(?!#__codelineno)', block) for block in code_blocks)
    # The prose link lands on the heading id MkDocs generated on the target page.
    link = re.search(r'<a href="([^"]+)">Synthetic note 00001 › Deep dive</a>', html)
    assert link and link.group(1) == "../synthetic-note-00001/#deep-dive"
    target = (project / "site/section-01/synthetic-note-00001/index.html").read_text(encoding="utf-8")
    assert 'id="deep-dive"' in target
    # ...and the target lists the test page under "Linked from".
    backlinks = target[target.index('id="linked-from"'):]
    assert re.search(r'<a href="../test-page/">Test page</a>', backlinks)



def test_backlinks_are_written_into_the_html_escaped_and_only_where_marked(small_project):
    # The list is added after Markdown ran (vault/plugin.py), so its titles are escaped by the
    # plugin, and a comment a note writes itself, even one like the plugin's mark, stays as written.
    project = small_project
    add_note(project, "section-01/Tips & tricks.md",
             "# Tips & tricks\n\nSee [[Synthetic note 00001]].\n\n<!-- vault-linked-from -->\n")
    proc = build(project)
    assert proc.returncode == 0, proc.stderr
    target = (project / "site/section-01/synthetic-note-00001/index.html").read_text(encoding="utf-8")
    backlinks = target[target.index('id="linked-from"'):]
    listed = re.search(r"</h2>\s*<ul>\n(.*?)\n</ul>", backlinks, re.S)
    assert listed, backlinks[:400]
    assert '<li><a href="../tips-tricks/">Tips &amp; tricks</a></li>' in listed.group(1)
    assert "vault-linked-from" not in target
    tips = (project / "site/section-01/tips-tricks/index.html").read_text(encoding="utf-8")
    assert "<!-- vault-linked-from -->" in tips

def test_build_fails_on_broken_wikilinks_naming_each(small_project):
    # Both kinds of broken link in one build: the strict build reports every warning before it fails.
    project = small_project
    add_page(project, PAGE.replace("[[Synthetic note 00001#Deep dive]]",
                                   "[[Nowhere]] and [[Synthetic note 00001#No such heading]]"))
    proc = build(project)
    assert proc.returncode != 0
    for message in (r"docs/section-01/Test page.md:9: wikilink \[\[Nowhere\]\] matches no note",
                    r"docs/section-01/Test page.md:9: wikilink \[\[Synthetic note 00001#No such heading\]\]: "
                    r"Synthetic note 00001 has no heading"):
        assert re.search(message, proc.stderr), proc.stderr


def test_aliases_are_shown_and_searchable(site):
    _, root = site  # the real site, built once per test process
    html = (root / "classical-cv/ransac/index.html").read_text(encoding="utf-8")
    assert "Also asked as: “Random sample consensus”" in html
    assert 'class="kb-badge kb-badge--middle"' in html
    text = (root / "search/kb_index.js").read_text(encoding="utf-8")
    index = json.loads(text.removeprefix("self.kbSearchIndex = ").rstrip().removesuffix(";"))
    page = next(p for p in index["pages"] if p["l"] == "classical-cv/ransac/")
    assert "Random sample consensus" in page["a"]
