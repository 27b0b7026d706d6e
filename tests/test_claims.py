"""Claims: what a claim's text allows, where a page shows it, and what make check reads from a snippet's
source (its claims, its assertions, and a snippet stripped of both)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from vault.check import Checker
from vault.claims import ClaimError, allowed, claim, read_proof, shows


@pytest.mark.parametrize("text, inside, outside", [
    ("11.7%", 0.1172, 0.126),
    ("1,182,720", 1_182_720, 1_182_721),
    ("0.80", 0.8049, 0.806),
    ("49–55%", 0.52, 0.56),
    ("3 to 5×", 4.2, 5.6),
    ("over 95%", 0.951, 0.95),
    ("at least 0.9", 0.9, 0.89),
    ("under $5\\times10^{-4}$", 4.9e-4, 5e-4),
    ("$\\le 10^{-3}$", 1e-3, 1.1e-3),
    ("within 2%", -0.019, 0.021),
    ("$4.5\\times10^{-5}$", 4.54e-5, 4.6e-5),
    ("10^{-6}", 1.2e-6, 2e-6),
    ("−0.170", -0.1701, 0.170),
    ("138M", 138.4e6, 139e6),
    ("3.2 MB", 3.24, 3.3),
])
def test_the_text_allows_what_it_says(text, inside, outside):
    assert claim(text, inside) == inside
    with pytest.raises(ClaimError, match=re.escape(repr(text))):
        claim(text, outside)


def test_a_tolerance_widens_a_point_number():
    claim("0.2 px", 0.24)
    claim("0.2 px", 0.29, tol=0.1)
    claim("about 165 px", 170, rel=0.05)
    with pytest.raises(ClaimError):
        claim("about 165 px", 175, rel=0.05)


@pytest.mark.parametrize("text", ["64×64", "3 of 5", "no number"])
def test_a_claim_holds_one_quantity(text):
    with pytest.raises(ClaimError, match="exactly one number"):
        allowed(text)


def test_the_page_must_show_the_whole_number():
    assert shows("dead units: 11.7% after 300 steps", "11.7%") is not None
    assert shows("dead units: 111.7% after", "11.7%") is None
    assert shows("a 0.119.5 thing", "0.119") is None
    assert shows("```python\nx = 11.7%\n```\n", "11.7%") is None  # code blocks are not the page's prose
    assert shows("inline `1e-12` counts", "1e-12") is not None
    assert shows("a gain of 5–30\nfold", "5–30 fold") == (10, 19)  # wrapped prose still shows it


def test_make_check_reads_claims_and_asserts_from_the_source():
    proof = read_proof('from vault.claims import claim\nclaim("1.5%", x)\nassert True\nclaim(text, y)\n')
    assert [c.text for c in proof.claims] == ["1.5%"]
    assert {line for line, _ in proof.problems} == {3, 4}  # a constant assert, a claim text not literal


def strip_proofs(source: str) -> str:
    """The snippet with every assert statement, and every statement calling claim() or assert_*(), replaced by
    `pass` (same line count)."""
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        proves = isinstance(node, ast.Expr) and any(
            isinstance(n, ast.Call) and (getattr(n.func, "id", "") == "claim"
                                         or getattr(n.func, "attr", getattr(n.func, "id", "")).startswith("assert"))
            for n in ast.walk(node))
        if isinstance(node, ast.Assert) or proves:
            indent = lines[node.lineno - 1][:node.col_offset]
            lines[node.lineno - 1] = indent + "pass"
            for n in range(node.lineno, node.end_lineno):
                lines[n] = ""
    return "\n".join(lines) + "\n"


def test_a_snippet_stripped_of_its_assertions_fails_make_check_naming_it(project: Path, capsys):
    snippet = project / "snippets/classical-cv/ransac.py"
    snippet.write_text(strip_proofs(snippet.read_text(encoding="utf-8")), encoding="utf-8")
    compile(snippet.read_text(encoding="utf-8"), str(snippet), "exec")  # still a valid program
    checker = Checker(project)
    checker.run_vault_checks()
    messages = [str(p) for p in checker.problems]
    assert "snippets/classical-cv/ransac.py:1: the snippet asserts and claims nothing" in "\n".join(messages), messages
    assert any(m.startswith("docs/classical-cv/RANSAC.md:") and "Code section shows no snippet part" in m
               for m in messages), messages


def test_a_claim_must_name_its_text_literally(project: Path):
    snippet = project / "snippets/classical-cv/ransac.py"
    source = snippet.read_text(encoding="utf-8")
    snippet.write_text(source + "\nshown = '17'\nclaim(shown, 17)\n", encoding="utf-8")
    checker = Checker(project)
    checker.run_vault_checks()
    line = len(source.splitlines()) + 3
    assert any(str(p).startswith(f"snippets/classical-cv/ransac.py:{line}: claim()'s first argument")
               for p in checker.problems), checker.problems
