"""Search as readers use it: every query in tests/search_queries/*.yml, typed into the site's search
box in Chromium. Prints recall@5 (the expected page among the first five pages listed) and MRR
(mean of 1/rank of the expected page, 0 when it is not listed), and fails below RECALL_AT_5."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from vault.urls import clean_dest_uri

from .browser import watch
from .conftest import ROOT

QUERIES_DIR = ROOT / "tests" / "search_queries"
RECALL_AT_5 = 0.95


def load_queries(folder: Path = QUERIES_DIR,
                 docs: Path = ROOT / "docs") -> tuple[list[tuple[str, str, str]], list[str]]:
    """(where, query, expected page URL) for every entry, and `path:line: problem` for bad ones."""
    queries, problems = [], []
    for file in sorted(folder.glob("*.yml")):
        rel = (file.relative_to(ROOT) if file.is_relative_to(ROOT) else file).as_posix()
        text = file.read_text(encoding="utf-8")
        try:
            entries = yaml.safe_load(text) or []
        except yaml.YAMLError as e:
            problems.append(f"{rel}: not YAML: {e}")
            continue
        if not isinstance(entries, list):
            problems.append(f"{rel}:1: a list of {{query, expect}} entries is expected")
            continue
        lines = text.splitlines()
        for n, entry in enumerate(entries):
            query = entry.get("query") if isinstance(entry, dict) else None
            expect = entry.get("expect") if isinstance(entry, dict) else None
            line = next((i for i, l in enumerate(lines, 1) if isinstance(query, str) and query in l), 0)
            where = f"{rel}:{line}"
            if not isinstance(query, str) or not query.strip() or not isinstance(expect, str) \
                    or set(entry) != {"query", "expect"}:
                problems.append(f"{rel}: entry {n + 1}: must be exactly "
                                "{{query: \"...\", expect: \"section/Page.md\"}}")
            elif not (docs / expect).is_file():
                problems.append(f"{where}: expect: no page docs/{expect}")
            else:
                queries.append((where, query, clean_dest_uri(expect).removesuffix("index.html")))
    return queries, problems


def ranked_pages(page, query: str, origin: str) -> list[str]:
    """Type the query into the search box; the distinct result pages, best first."""
    box = page.locator("input.md-search__input")
    box.fill("")
    page.wait_for_function("() => !document.querySelector('li.md-search-result__item')")
    box.fill(query)
    page.keyboard.press("End")  # a real key press makes Material search (fill sends no key events)
    try:
        page.wait_for_selector("li.md-search-result__item", timeout=10000)
    except Exception:  # playwright's TimeoutError: nothing found
        return []
    hrefs = page.eval_on_selector_all("li.md-search-result__item > a.md-search-result__link",
                                      "els => els.map(e => e.href)")
    pages = [re.split(r"[?#]", h)[0].removeprefix(origin) for h in hrefs]
    return list(dict.fromkeys(pages))


def test_every_query_file_is_well_formed():
    queries, problems = load_queries()
    assert not problems, "\n".join(problems)
    assert len(queries) >= 60


def test_a_bad_query_file_is_named_with_its_line(tmp_path):
    (tmp_path / "bad.yml").write_text('- {query: "ransac", expect: "classical-cv/No such page.md"}\n'
                                      '- {query: "x"}\n', encoding="utf-8")
    _, problems = load_queries(tmp_path)
    assert problems[0].endswith("bad.yml:1: expect: no page docs/classical-cv/No such page.md"), problems
    assert "entry 2: must be exactly" in problems[1], problems


def test_search_ranks_the_expected_page_first_or_near(browser, site, capsys):
    url, _ = site
    queries, problems = load_queries()
    assert not problems, "\n".join(problems)
    context = browser.new_context()
    page = context.new_page()
    visit = watch(page, url)
    page.goto(url)
    page.click("input.md-search__input")
    ranks, misses = [], []
    for where, query, expected in queries:
        pages = ranked_pages(page, query, url)
        rank = pages.index(expected) + 1 if expected in pages else 0
        ranks.append(rank)
        if rank != 1:
            misses.append(f"{where}: {query!r}: {expected} at rank {rank or 'none'}; first: {pages[:3]}")
    recall = sum(1 for r in ranks if 1 <= r <= 5) / len(ranks)
    mrr = sum(1 / r for r in ranks if r) / len(ranks)
    first = sum(1 for r in ranks if r == 1) / len(ranks)
    with capsys.disabled():
        print(f"\nsearch quality over {len(ranks)} queries: recall@5 = {recall:.3f}, MRR = {mrr:.3f}, "
              f"first = {first:.3f}")
        for m in misses:
            print("  not first:", m)
    assert not visit.problems, visit.problems
    assert recall >= RECALL_AT_5, "\n".join(misses)
