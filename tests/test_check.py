"""`make check` reports every kind of broken contribution as `path:line: message`, exit status 1.

Each test breaks a copy of the real vault in one way and runs the checker on it.
"""
from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest

from vault.check import main as check_main

from .conftest import ROOT, write

RANSAC = "docs/classical-cv/RANSAC.md"


def run_check(project: Path, capsys, build: bool = False) -> tuple[int, str]:
    args = ["--root", str(project)] + ([] if build else ["--no-build"])
    code = check_main(args)
    return code, capsys.readouterr().out


def edit(project: Path, rel: str, old: str, new: str, count: int = 1) -> None:
    path = project / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"fixture text {old!r} not in {rel}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def line_of(project: Path, rel: str, needle: str) -> int:
    for n, line in enumerate((project / rel).read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {rel}")


def assert_reported(code: int, out: str, location: str, pattern: str) -> None:
    assert code == 1, out
    lines = [l for l in out.splitlines() if l.startswith(location + ":")]
    assert any(re.search(pattern, l) for l in lines), f"no {location}: {pattern!r} in:\n{out}"


def test_the_real_vault_passes_including_the_strict_build(capsys):
    code, out = run_check(ROOT, capsys, build=True)
    assert code == 0, out


def test_bad_yaml_front_matter(project, capsys):
    edit(project, RANSAC, "difficulty: middle", "difficulty: [middle")
    code, out = run_check(project, capsys)
    line = line_of(project, RANSAC, "difficulty: [middle")
    assert_reported(code, out, f"{RANSAC}:{line}", r"invalid YAML front matter")


@pytest.mark.parametrize("key", ["question", "tags", "difficulty"])
def test_missing_required_front_matter(project, capsys, key):
    text = (project / RANSAC).read_text(encoding="utf-8")
    text = re.sub(rf"^{key}:.*\n(  - .*\n)*", "", text, count=1, flags=re.M)
    (project / RANSAC).write_text(text, encoding="utf-8")
    code, out = run_check(project, capsys)
    assert_reported(code, out, f"{RANSAC}:1", rf"'{key}'")


def test_difficulty_outside_the_scale(project, capsys):
    edit(project, RANSAC, "difficulty: middle", "difficulty: hard")
    assert_reported(*run_check(project, capsys), f"{RANSAC}:1", r"'difficulty' must be one of")


def test_h1_differs_from_question(project, capsys):
    edit(project, RANSAC, "# How does the RANSAC algorithm help in model fitting?", "# RANSAC")
    code, out = run_check(project, capsys)
    assert_reported(code, out, f"{RANSAC}:{line_of(project, RANSAC, '# RANSAC')}", r"H1 must be the question")


@pytest.mark.parametrize("section", ["In 30 seconds", "Pitfalls", "References"])
def test_missing_anatomy_section(project, capsys, section):
    edit(project, RANSAC, f"## {section}\n", "## Something else\n")
    assert_reported(*run_check(project, capsys), RANSAC, rf"missing section '## {section}'")


def test_empty_anatomy_section(project, capsys):
    text = (project / RANSAC).read_text(encoding="utf-8")
    start = text.index("## Pitfalls\n") + len("## Pitfalls\n")
    text = text[:start] + "\n" + text[text.index("## Follow-ups"):]
    (project / RANSAC).write_text(text, encoding="utf-8")
    code, out = run_check(project, capsys)
    assert_reported(code, out, f"{RANSAC}:{line_of(project, RANSAC, '## Pitfalls')}", r"'## Pitfalls' is empty")


def test_30_second_answer_too_long(project, capsys):
    edit(project, RANSAC, "## In 30 seconds\n\n", "## In 30 seconds\n\n" + "word " * 140 + "\n\n")
    code, out = run_check(project, capsys)
    assert_reported(code, out, f"{RANSAC}:{line_of(project, RANSAC, '## In 30 seconds')}",
                    r"30-second answer has \d+ words")


def test_placeholder_text(project, capsys):
    edit(project, RANSAC, "## Pitfalls\n\n", "## Pitfalls\n\nTODO: write this.\n\n")
    code, out = run_check(project, capsys)
    assert_reported(code, out, f"{RANSAC}:{line_of(project, RANSAC, 'TODO: write')}", r"placeholder")


def test_duplicate_question(project, capsys):
    dup = project / "docs/classical-cv/RANSAC again.md"
    dup.write_text((project / RANSAC).read_text(encoding="utf-8"), encoding="utf-8")
    edit(project, "docs/classical-cv/index.md", "6. [[RANSAC|", "11. [[RANSAC again]]\n6. [[RANSAC|")
    code, out = run_check(project, capsys)
    assert_reported(code, out, "docs/classical-cv/RANSAC again.md:1",
                    r"same question is also asked by docs/classical-cv/RANSAC.md")
    assert_reported(code, out, f"{RANSAC}:1", r"same question")


def test_page_not_listed_in_section_index(project, capsys):
    edit(project, "docs/classical-cv/index.md",
         "6. [[RANSAC|How does the RANSAC algorithm help in model fitting?]]", "6. RANSAC")
    assert_reported(*run_check(project, capsys), f"{RANSAC}:1", r"not listed in the section index")


def test_dangling_wikilink(project, capsys):
    edit(project, RANSAC, "## Follow-ups\n\n", "## Follow-ups\n\n- See [[Nowhere]].\n")
    code, out = run_check(project, capsys)
    assert_reported(code, out, f"{RANSAC}:{line_of(project, RANSAC, '[[Nowhere]]')}",
                    r"\[\[Nowhere\]\] matches no note")


def test_ambiguous_wikilink(project, capsys):
    write(project / "docs/notes/RANSAC.md", "# another note with the same name\n")
    edit(project, "docs/notes/index.md", "# Concept notes", "# Concept notes\n\n[[notes/RANSAC]]")
    code, out = run_check(project, capsys)
    line = line_of(project, "docs/classical-cv/index.md", "[[RANSAC|")
    assert_reported(code, out, f"docs/classical-cv/index.md:{line}",
                    r"\[\[RANSAC\]\] is ambiguous: classical-cv/RANSAC.md, notes/RANSAC.md")


def test_bad_heading_in_wikilink(project, capsys):
    edit(project, "docs/index.md", "## Contributing\n", "## Contributing\n\nSee [[RANSAC#No such heading]].\n")
    code, out = run_check(project, capsys)
    line = line_of(project, "docs/index.md", "No such heading")
    assert_reported(code, out, f"docs/index.md:{line}", r"RANSAC has no heading 'No such heading'")


def test_missing_snippet_file(project, capsys):
    edit(project, RANSAC, '"classical-cv/ransac.py:line"', '"classical-cv/nope.py:line"')
    code, out = run_check(project, capsys)
    assert_reported(code, out, f"{RANSAC}:{line_of(project, RANSAC, 'nope.py')}",
                    r"snippets/classical-cv/nope.py does not exist")


def test_missing_snippet_section(project, capsys):
    edit(project, RANSAC, '"classical-cv/ransac.py:line"', '"classical-cv/ransac.py:no-such-part"')
    code, out = run_check(project, capsys)
    assert_reported(code, out, f"{RANSAC}:{line_of(project, RANSAC, 'no-such-part')}",
                    r"section 'no-such-part' not found")


def test_orphan_snippet(project, capsys):
    write(project / "snippets/classical-cv/unused.py", "assert 1 + 1 == 2\n")
    assert_reported(*run_check(project, capsys), "snippets/classical-cv/unused.py:1", r"not included by any page")


# Unsafe HTML is judged in the build, on the HTML each note becomes: tests/test_security.py.


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """An incompressible RGB PNG (random pixels), so its size is about width * height * 3."""
    import numpy as np
    raw = np.random.default_rng(seed).integers(0, 256, (height, width * 3 + 1), dtype=np.uint8)
    raw[:, 0] = 0  # filter type: none
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes()))
            + chunk(b"IEND", b""))


def test_image_over_500_kb(project, capsys):
    big = project / "docs/assets/figures/too-big.png"
    big.write_bytes(png_bytes(400, 500))
    assert big.stat().st_size > 500 * 1024
    assert_reported(*run_check(project, capsys), "docs/assets/figures/too-big.png:1",
                    r"image is \d+ KB; the limit is 500 KB")


def test_two_notes_with_the_same_url(project, capsys):
    write(project / "docs/classical-cv/Ransac!.md", "# x\n")
    code, out = run_check(project, capsys)
    assert_reported(code, out, "docs/classical-cv/Ransac!.md:1", r"same URL as docs/classical-cv/RANSAC.md")


def test_build_warnings_are_reported_with_the_page(project, capsys):
    """A plain Markdown link to a missing page passes the vault checks; the strict build catches it."""
    edit(project, RANSAC, "## Pitfalls\n\n", "## Pitfalls\n\nSee [the missing page](missing.md).\n\n")
    code, out = run_check(project, capsys, build=True)
    assert_reported(code, out, f"{RANSAC}:{line_of(project, RANSAC, 'missing.md')}", r"mkdocs: .*missing\.md")
