"""Results kept in .cache/ across builds (vault/diskcache.py): the same output as computing them, and
a key that changes with whatever the result depends on."""
from __future__ import annotations

import sqlite3

import markdown
import pytest

from vault import diskcache, highlight, math, notebook_assets

CODE = "```python\ndef f(x):\n    return 2 * x  # twice\n```\n"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(diskcache, "CACHE_DIR", tmp_path)
    diskcache.named.cache_clear()
    yield tmp_path
    diskcache.named.cache_clear()
    highlight.uninstall()


def entries(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]


def convert(text: str, **highlight_config) -> str:
    return markdown.markdown(text, extensions=["pymdownx.highlight", "pymdownx.superfences"],
                             extension_configs={"pymdownx.highlight": highlight_config})


@pytest.mark.parametrize("config", [{}, {"linenums": True}, {"anchor_linenums": True, "linenums": True}])
def test_highlighted_code_from_the_cache_is_what_pygments_gives(cache_dir, config):
    fresh = convert(CODE, **config)
    highlight.install()
    first, again = convert(CODE, **config), convert(CODE, **config)
    assert first == again == fresh
    assert entries(cache_dir / "highlight.sqlite") == 1
    diskcache.named.cache_clear()  # a new process: only the file remains
    assert convert(CODE, **config) == fresh


def test_a_setting_or_the_code_changes_the_key(cache_dir):
    highlight.install()
    plain, numbered = convert(CODE), convert(CODE, linenums=True)
    assert plain != numbered and "linenos" in numbered
    assert convert(CODE.replace("twice", "double")) != plain
    assert entries(cache_dir / "highlight.sqlite") == 3


def test_math_text_and_notebook_styles_are_kept_and_equal_to_computing_them(cache_dir):
    tex = r"\frac{\sigma}{2}"
    assert math.readable(tex) == math._readable(tex)
    html = '<style>.a{color:red}.b{color:blue}</style><div class="a">x</div>'
    notebook_assets.prune_styles.cache_clear()
    assert notebook_assets.prune_styles(html) == notebook_assets._prune_styles(html)
    assert ".b" not in notebook_assets.prune_styles(html)
    assert entries(cache_dir / "readable-math.sqlite") == 1
    assert entries(cache_dir / "notebook-styles.sqlite") == 1


def test_the_code_version_follows_the_source():
    def one():
        return 1

    def two():
        return 1 + 1

    assert diskcache.code_version(one) != diskcache.code_version(two)
    assert diskcache.code_version(one) == diskcache.code_version(one)


def test_an_unwritable_cache_directory_still_computes(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(diskcache, "CACHE_DIR", blocker / "cache")
    diskcache.named.cache_clear()
    try:
        cache = diskcache.named("anything")
        assert cache.through("k", lambda: "computed") == "computed"
    finally:
        diskcache.named.cache_clear()
