"""Execute the vault's notebooks: `python -m vault.notebooks` rewrites them with fresh outputs.

The tests call `execute` on a copy; the site renders the outputs committed in the file.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT_S = 180


def notebook_files() -> list[Path]:
    return sorted(p for p in (ROOT / "docs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execute(path: Path) -> nbformat.NotebookNode:
    """Run every cell; any error raises (allow_errors is off)."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=TIME_LIMIT_S, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def main(argv: list[str]) -> int:
    for path in [Path(a) for a in argv] or notebook_files():
        nbformat.write(execute(path), path)
        print(f"executed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
