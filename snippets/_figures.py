"""Where snippets save figures: docs/assets/figures/<section>/, or $KB_FIGURE_DIR when the tests run them.

Most figures come out the same, pixel for pixel, on any machine, and the tests compare a re-made one
with the committed one. A figure drawn from a training run is `exact=False`: its curves move with the
CPU's summation order (`make spread` shows which), so the tests cannot compare pixels across machines.
For such a figure, `make figures` records a fingerprint of the code that drew it in SOURCES, and the
tests fail when the code has changed since; the numbers it shows are bound as claims in its snippet.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vault.snippets import FIGURE_SOURCES as SOURCES  # noqa: E402
from vault.snippets import INEXACT_SUFFIX  # noqa: E402

SNIPPETS = Path(__file__).resolve().parent
DOCS_FIGURES = SNIPPETS.parent / "docs" / "assets" / "figures"


def fingerprint(snippet: Path) -> str:
    """A hash of the snippet and every helper it can import (snippets/_*.py and its folder's _*.py)."""
    digest = hashlib.sha256()
    for path in [snippet, *sorted(SNIPPETS.glob("_*.py")), *sorted(snippet.parent.glob("_*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def save(fig, section: str, name: str, exact: bool = True) -> Path:
    """Save a figure as a small PNG and close it. Returns the path written."""
    out = os.environ.get("KB_FIGURE_DIR")
    root = Path(out) if out else DOCS_FIGURES
    path = root / section / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    key = f"{section}/{name}.png"
    if out and not exact:
        path.with_suffix(INEXACT_SUFFIX).write_text(fingerprint(Path(sys.argv[0]).resolve()), encoding="utf-8")
    elif not out:  # make figures: record what drew an inexact figure, forget an exact one
        sources = json.loads(SOURCES.read_text(encoding="utf-8")) if SOURCES.is_file() else {}
        sources.pop(key, None)
        if not exact:
            sources[key] = fingerprint(Path(sys.argv[0]).resolve())
        SOURCES.write_text(json.dumps(dict(sorted(sources.items())), indent=1) + "\n", encoding="utf-8")
    return path
