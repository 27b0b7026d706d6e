"""Changing a bound number on a page, or the code behind it, fails the suite naming the page and the
claim: tested by mutating a sample of the real claims in a copy of the vault."""
from __future__ import annotations

import ast
from pathlib import Path

from vault.check import Checker
from vault.claims import allowed, shows

from .test_snippets import snippet_failure

PAGE_SAMPLE = 12  # claims whose page text is changed, each on a different page
CODE_SAMPLE = 4   # claims whose computed value is changed, each in a different snippet


def mutated_text(text: str) -> str:
    """The same text with its last digit changed: what a careless edit of the page would leave."""
    i = max(i for i, ch in enumerate(text) if ch.isdigit())
    return text[:i] + ("8" if text[i] == "9" else str(int(text[i]) + 1)) + text[i + 1:]


def bound_claims(root: Path) -> list[tuple[str, int, str, str]]:
    """(snippet path, line, text, page) of every claim the checker finds shown on a page."""
    checker = Checker(root)
    checker.run_vault_checks()
    assert not checker.problems, "\n".join(map(str, checker.problems))
    return [(snippet, c.line, c.text, page) for snippet, c, page in checker.claims_bound]


def spread(items: list, key, n: int) -> list:
    """n items with distinct keys, spread evenly over the list (the same sample on every run)."""
    firsts, seen = [], set()
    for item in items:
        if key(item) not in seen:
            seen.add(key(item))
            firsts.append(item)
    step = max(1, len(firsts) // n)
    return firsts[::step][:n]


def test_changing_a_bound_number_on_a_page_fails_naming_the_page_and_the_claim(project: Path):
    claims = bound_claims(project)
    pages = {page for *_, page in claims}
    print(f"{len(claims)} claims bound on {len(pages)} pages")
    assert len(pages) >= PAGE_SAMPLE
    sample = spread(claims, key=lambda c: c[3], n=PAGE_SAMPLE)
    for snippet, line, text, page in sample:
        path = project / page
        md = path.read_text(encoding="utf-8")
        while (span := shows(md, text)) is not None:  # every place the page shows it
            md = md[:span[0]] + mutated_text(text) + md[span[1]:]
        path.write_text(md, encoding="utf-8")
    checker = Checker(project)
    checker.run_vault_checks()
    messages = [str(p) for p in checker.problems]
    for snippet, line, text, page in sample:
        assert any(m.startswith(f"{snippet}:{line}: claim '{text}'") and page in m for m in messages), \
            f"changing '{text}' on {page} went unnoticed:\n" + "\n".join(messages)


def test_changing_the_code_behind_a_bound_number_fails_naming_the_page_and_the_claim(project: Path,
                                                                                     tmp_path: Path):
    # the first claim of each snippet: the mutated run fails early, so the sample stays quick
    sample = spread(sorted(bound_claims(project), key=lambda c: c[1]), key=lambda c: c[0], n=CODE_SAMPLE)
    assert len(sample) == CODE_SAMPLE
    for snippet, line, text, page in sample:
        path = project / snippet
        source = path.read_text(encoding="utf-8")
        call = next(node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                    and node.lineno == line and getattr(node.func, "id", "") == "claim")
        value = call.args[1] if len(call.args) > 1 else next(k.value for k in call.keywords if k.arg == "value")
        widen = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("tol", "rel")}
        lines = source.splitlines(keepends=True)
        offset = sum(map(len, lines[:value.lineno - 1])) + value.col_offset
        end = sum(map(len, lines[:value.end_lineno - 1])) + value.end_col_offset
        path.write_text(source[:offset] + repr(allowed(text, **widen).outside()) + source[end:], encoding="utf-8")
        failure = snippet_failure(path, project / "snippets", tmp_path / path.stem)
        assert failure and page in failure and repr(text) in failure, \
            f"changing the value behind '{text}' ({snippet}:{line}) went unnoticed: {failure}"
