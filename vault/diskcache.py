"""Results of slow, pure steps of a build, kept in SQLite under .cache/ so the next build reuses them.

A key is a hash of everything the result depends on: the input, the settings and the version of the
code that computes it. Nothing is ever looked up by anything less, so a stale entry cannot be
returned, only left unused. SQLite lets parallel builds (pytest -n 2) share one file; a checkout
where .cache/ cannot be written still builds, computing everything.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import sqlite3
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache"


def key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def code_version(*code) -> str:
    """A hash of the source of the functions (or modules) that compute a result: editing one leaves
    its old results unused instead of returning them."""
    return key(*(inspect.getsource(c) for c in code))


class Cache:
    """key -> text, in one SQLite file, with the entries read or written in this process in memory."""

    def __init__(self, path: Path):
        self.memory: dict[str, str] = {}
        self.db = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
            # A cache needs no durability: losing the last writes to a crash costs a recomputation.
            self.db.execute("PRAGMA synchronous = OFF")
            self.db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT)")
            self.db.commit()
        except (OSError, sqlite3.Error):
            self.db = None

    def get(self, k: str) -> str | None:
        if k in self.memory:
            return self.memory[k]
        if self.db is not None:
            try:
                row = self.db.execute("SELECT value FROM entries WHERE key = ?", (k,)).fetchone()
            except sqlite3.Error:
                row = None
            if row:
                self.memory[k] = row[0]
                return row[0]
        return None

    def put(self, k: str, value: str) -> None:
        self.memory[k] = value
        if self.db is not None:
            try:
                self.db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)", (k, value))
                self.db.commit()
            except sqlite3.Error:
                pass

    def through(self, k: str, compute) -> str:
        """The value kept under `k`, or `compute()`, kept there."""
        value = self.get(k)
        if value is None:
            value = compute()
            self.put(k, value)
        return value


@functools.lru_cache(maxsize=None)
def named(name: str) -> Cache:
    """One cache file per kind of result (.cache/<name>.sqlite), opened once per process."""
    return Cache(CACHE_DIR / f"{name}.sqlite")
