"""Where snippets save figures: docs/assets/figures/<section>/, or $KB_FIGURE_DIR when the tests run them."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DOCS_FIGURES = Path(__file__).resolve().parent.parent / "docs" / "assets" / "figures"


def save(fig, section: str, name: str) -> Path:
    """Save a figure as a small PNG and close it. Returns the path written."""
    root = Path(os.environ.get("KB_FIGURE_DIR", DOCS_FIGURES))
    path = root / section / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path
