"""Practice outputs: the Anki deck, the CSV, the printable handout and the Practice page."""
from __future__ import annotations

import csv
import io
import re
import sqlite3
import tempfile
import time
import zipfile

import pytest
from pypdf import PdfReader

from vault.anki import CSV_FILE, DECK_FILE, _package, csv_text, deck_bytes
from vault.cards import collect
from vault.vault import Vault

from .browser import settle
from .conftest import ROOT
from .test_browser import open_page

SITE_URL = "https://example.org/kb/"


@pytest.fixture(scope="module")
def cards():
    found = collect(Vault.load(ROOT / "docs"))
    assert found, "no question pages"
    return found


def deck_notes(apkg: bytes) -> list[tuple]:
    with zipfile.ZipFile(io.BytesIO(apkg)) as z, \
            open_sqlite(z.read("collection.anki2")) as db:
        return db.execute("select id, guid, flds, tags from notes order by id").fetchall()


class open_sqlite:
    """A SQLite database from bytes, via a temporary file."""

    def __init__(self, data: bytes):
        import tempfile
        self.tmp = tempfile.NamedTemporaryFile(suffix=".anki2")
        self.tmp.write(data)
        self.tmp.flush()

    def __enter__(self):
        self.db = sqlite3.connect(self.tmp.name)
        return self.db

    def __exit__(self, *exc):
        self.db.close()
        self.tmp.close()


def test_every_question_page_has_a_card_with_its_answer(cards):
    vault = Vault.load(ROOT / "docs")
    questions = [u for u in vault.notes if vault.is_question(u) and vault.section_of(u) != "notes"]
    assert sorted(c.uri for c in cards) == sorted(questions)
    for card in cards:
        assert card.question and card.answer_md and card.difficulty in ("junior", "middle", "senior")
        assert "[[" not in card.answer_md
        assert card.question == vault.notes[card.uri].h1.text


def test_anki_deck_has_one_complete_note_per_question(cards):
    notes = deck_notes(deck_bytes(cards, SITE_URL))
    assert len(notes) == len(cards)
    for _id, guid, fields, tags in notes:
        question, answer, link, section, difficulty = fields.split("\x1f")
        assert question and answer and section and difficulty
        assert link.startswith(SITE_URL)
        assert "section::" in tags and "difficulty::" in tags


def test_anki_deck_is_the_same_bytes_each_build_and_leaves_no_temp_file(cards, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where tempfile puts what it makes
    _package.cache_clear()
    first = deck_bytes(cards, SITE_URL)
    _package.cache_clear()
    time.sleep(2)  # a zip entry's time has a 2-second grain
    assert deck_bytes(cards, SITE_URL) == first
    assert list(tmp_path.iterdir()) == []  # genanki's own writer leaves its database behind


def test_anki_ids_are_stable_across_builds(cards):
    first = deck_notes(deck_bytes(cards, SITE_URL))
    second = deck_notes(deck_bytes(list(reversed(cards)), SITE_URL))  # even when the order changes
    assert sorted((i, g) for i, g, _, _ in first) == sorted((i, g) for i, g, _, _ in second)
    assert len({i for i, *_ in first}) == len(first)


def test_same_questions_give_the_same_deck_file(cards):
    first = deck_bytes(cards, SITE_URL)
    time.sleep(2.1)  # zip entries carry a date with 2-second resolution
    assert deck_bytes(cards, SITE_URL) == first


def test_csv_matches_the_cards(cards):
    rows = list(csv.DictReader(io.StringIO(csv_text(cards, SITE_URL))))
    assert [r["question"] for r in rows] == [c.question for c in cards]
    assert all(r["answer_markdown"] and r["url"].startswith(SITE_URL) for r in rows)


def test_site_ships_the_deck_and_csv(site, cards):
    _, root = site
    assert len(deck_notes((root / "downloads" / DECK_FILE).read_bytes())) == len(cards)
    assert (root / "downloads" / CSV_FILE).read_text(encoding="utf-8").count("\n") >= len(cards)


def squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).lower()


def test_printed_handout_contains_every_question(browser, site, cards, tmp_path):
    url, _ = site
    page, visit = open_page(browser, url + "handout/", url)
    pdf = tmp_path / "handout.pdf"
    page.pdf(path=str(pdf), format="A4")
    text = squash(" ".join(p.extract_text() for p in PdfReader(pdf).pages))
    missing = [c.question for c in cards if squash(c.question) not in text]
    assert not missing, missing
    assert "search" not in squash(text[:200])  # no header chrome printed above the title
    assert not visit.problems


def test_tags_index_lists_questions_by_difficulty(site):
    from vault.urls import clean_dest_uri
    _, root = site
    html = (root / "tags" / "index.html").read_text(encoding="utf-8")
    vault = Vault.load(ROOT / "docs")
    for level in ("junior", "middle", "senior"):
        listing = html[html.index(f'id="tag:difficulty-{level}"'):]
        listing = listing[:listing.index("</ul>")]
        listed = {h.removeprefix("../") for h in re.findall(r'<a href="([^"]+)"', listing)}
        expected = {clean_dest_uri(u).removesuffix("index.html") for u, src in vault.notes.items()
                    if vault.is_question(u) and src.meta.get("difficulty") == level}
        assert expected and listed == expected, level


# --- the Practice page in the browser ---------------------------------------------------------------

def practice(browser, url):
    page, visit = open_page(browser, url + "practice/", url)
    page.wait_for_selector(".kb-practice__card")
    return page, visit


def test_practice_draws_reveals_grades_and_remembers(browser, site, cards):
    url, _ = site
    page, visit = practice(browser, url)
    by_url = {c.url: c for c in cards}
    first = page.get_attribute(".kb-practice__card", "data-url")
    card = by_url[first]
    assert page.inner_text(".kb-practice__question") == card.question
    page.click("text=Show answer")
    # Compare prose, math aside: KaTeX renders it asynchronously on both pages.
    answer = page.evaluate("""() => { const a = document.querySelector('.kb-practice__answer').cloneNode(true);
        a.querySelectorAll('.arithmatex, .kb-practice__link').forEach(e => e.remove()); return a.textContent; }""")
    question_page = page.context.new_page()
    question_page.goto(url + card.url)
    settle(question_page)
    on_page = question_page.evaluate("""() => { const h = document.getElementById('in-30-seconds'); let t = '';
        for (let n = h.nextElementSibling; n && n.tagName !== 'H2'; n = n.nextElementSibling) {
            const c = n.cloneNode(true); c.querySelectorAll('.arithmatex').forEach(e => e.remove());
            t += c.textContent + ' ';
        }
        return t; }""")
    assert squash(on_page) == squash(answer)
    page.click("[data-grade='good']")
    stored = page.evaluate("JSON.parse(localStorage.getItem('kb-practice/v1')).progress")
    assert stored[first]["box"] == 2 and stored[first]["reviews"] == 1
    page.reload()
    settle(page)
    page.wait_for_selector(".kb-practice__card")
    assert page.evaluate("JSON.parse(localStorage.getItem('kb-practice/v1')).progress")[first]["box"] == 2
    if len(cards) > 1:  # the graded card rests; another one is drawn
        assert page.get_attribute(".kb-practice__card", "data-url") != first
    assert not visit.problems


def test_practice_filters_narrow_the_draw(browser, site, cards):
    url, _ = site
    page, _ = practice(browser, url)
    for field, value in (("difficulty", cards[-1].difficulty), ("section", cards[-1].section)):
        page.select_option(f"select[data-filter='{field}']", value)
        drawn = page.get_attribute(".kb-practice__card", "data-url")
        assert getattr(next(c for c in cards if c.url == drawn), field) == value
    page.select_option("select[data-filter='tag']", "robust-estimation")   # RANSAC's tag, in another section
    assert page.locator(".kb-practice__card").count() == 0
    assert page.inner_text(".kb-practice__empty") == "No question matches these filters."
    page.select_option("select[data-filter='section']", "")
    page.select_option("select[data-filter='difficulty']", "")
    assert page.get_attribute(".kb-practice__card", "data-url") == "classical-cv/ransac/"


def test_interview_mode_runs_five_timed_questions(browser, site, cards):
    url, _ = site
    page, visit = practice(browser, url)
    page.click("text=Interview mode")
    expected = min(5, len(cards))
    seen = []
    for i in range(expected):
        page.wait_for_selector(f"text=Question {i + 1} of {expected}")
        seen.append(page.get_attribute(".kb-practice__card", "data-url"))
        before = page.inner_text(".kb-practice__timer")
        page.wait_for_timeout(1100)
        assert page.inner_text(".kb-practice__timer") != before  # the clock runs
        page.click("text=Next question" if i + 1 < expected else "text=Finish")
    assert len(set(seen)) == expected
    links = page.eval_on_selector_all(".kb-practice__review a", "els => els.map(a => a.href)")
    assert [l.removeprefix(url) for l in links] == seen
    assert not visit.problems
