"""The question set as an Anki deck (.apkg, via genanki) and as CSV: `python -m vault.anki [DIR]`.

The MkDocs plugin puts both into the site under downloads/. Anki recognises a re-imported note by
its GUID, and the note id is fixed too, both derived from the page's URL: importing a newer deck
updates the cards instead of duplicating them.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import itertools
import sqlite3
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import genanki

from .cards import Card, collect
from .vault import Vault

DECK_NAME = "DL & CV Interview Questions"
DECK_FILE = "dl-cv-interview-questions.apkg"
CSV_FILE = "dl-cv-interview-questions.csv"
# Fixed ids: changing either makes Anki treat the deck or the note type as new.
DECK_ID = 1_734_105_601
MODEL_ID = 1_734_105_602
TIMESTAMP = 1_734_105_600  # a fixed creation time, so that a rebuild writes the same ids

MODEL = genanki.Model(
    MODEL_ID, "DL & CV interview question",
    fields=[{"name": "Question"}, {"name": "Answer"}, {"name": "Link"}, {"name": "Section"}, {"name": "Difficulty"}],
    templates=[{
        "name": "Recall",
        "qfmt": '<div class="section">{{Section}} · {{Difficulty}}</div><div class="question">{{Question}}</div>',
        "afmt": '{{FrontSide}}<hr id="answer">{{Answer}}<p><a href="{{Link}}">Full answer on the site</a></p>',
    }],
    css=".card { font-family: system-ui, sans-serif; font-size: 18px; text-align: left; max-width: 40em; }"
        ".section { font-size: 13px; color: #777; } .question { font-weight: 600; margin-top: .5em; }",
)


def note_id(card: Card) -> int:
    """A stable, positive id in Anki's millisecond-timestamp range, from the page URL."""
    digest = int(hashlib.sha256(card.url.encode()).hexdigest(), 16)
    return 1_500_000_000_000 + digest % 100_000_000_000


class StableNote(genanki.Note):
    """genanki numbers notes from a clock; give each note its own id instead."""

    def __init__(self, *args, fixed_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fixed_id = fixed_id

    def write_to_db(self, cursor, timestamp, deck_id, id_gen):
        # The first id drawn is the note's; the cards draw theirs after it.
        super().write_to_db(cursor, timestamp, deck_id, itertools.chain([self.fixed_id], id_gen))


def anki_tag(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_:" else "-" for c in text.strip())


def deck_bytes(cards: list[Card], site_url: str) -> bytes:
    notes = tuple(
        ((card.question, card.answer_html, site_url + card.url, card.section_title, card.difficulty),
         genanki.guid_for(card.url),
         (f"section::{card.section}", f"difficulty::{card.difficulty}", *map(anki_tag, card.tags)),
         note_id(card))
        for card in cards)
    return _package(notes)


@functools.lru_cache(maxsize=4)  # `make serve` rebuilds the deck on every save; most saves leave it as it was
def _package(notes: tuple) -> bytes:
    """The .apkg archive: Anki's collection database, built by genanki, and an empty media list.

    genanki's own Package.write_to_file builds the database in a temp file it never deletes (one per
    build), and dates the archive's entries now; here the database lives in a directory that is
    removed, and every entry is dated TIMESTAMP, so the same questions always give the same bytes
    (the release and the site then ship one file)."""
    deck = genanki.Deck(DECK_ID, DECK_NAME)
    for fields, guid, tags, fixed_id in notes:
        deck.add_note(StableNote(model=MODEL, fields=list(fields), guid=guid, tags=list(tags), fixed_id=fixed_id))
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "collection.anki2"
        db = sqlite3.connect(db_path)
        try:
            genanki.Package(deck).write_to_db(db.cursor(), TIMESTAMP, itertools.count(TIMESTAMP * 1000))
            db.commit()
        finally:
            db.close()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as apkg:
            for name, data in (("collection.anki2", db_path.read_bytes()), ("media", b"{}")):
                apkg.writestr(zipfile.ZipInfo(name, date_time=time.gmtime(TIMESTAMP)[:6]), data)
        return out.getvalue()


def csv_text(cards: list[Card], site_url: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "question", "answer_markdown", "difficulty", "tags", "url"])
    for c in cards:
        writer.writerow([c.section_title, c.question, c.answer_md, c.difficulty, " ".join(c.tags), site_url + c.url])
    return out.getvalue()


def main(argv: list[str]) -> int:
    from mkdocs.config import load_config
    root = Path(__file__).resolve().parent.parent
    out = Path(argv[0]) if argv else root / "dist"
    site_url = load_config(str(root / "mkdocs.yml"))["site_url"] or ""
    cards = collect(Vault.load(root / "docs"))
    out.mkdir(parents=True, exist_ok=True)
    (out / DECK_FILE).write_bytes(deck_bytes(cards, site_url))
    (out / CSV_FILE).write_text(csv_text(cards, site_url), encoding="utf-8")
    print(f"wrote {len(cards)} cards to {out / DECK_FILE} and {out / CSV_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
