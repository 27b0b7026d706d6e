"""Snippets forked from the zygote behave as `python snippet.py` would."""
from __future__ import annotations

from pathlib import Path

from vault.snippets import run

SCRIPT = """
import os, sys
assert __name__ == "__main__"
assert os.getcwd() == os.path.dirname(os.path.abspath(__file__))
assert sys.path[0] == os.getcwd() and sys.argv == [__file__]
assert sys.stdin.read() == ""
import torch
assert not torch.are_deterministic_algorithms_enabled()  # the zygote's warm-up call left no trace
assert "leaked" not in globals() and not os.environ.get("KB_LEAK")
leaked = True
os.environ["KB_LEAK"] = "1"
torch.use_deterministic_algorithms(True)
print("out", os.environ.get("KB_FIGURE_DIR"))
"""


def test_a_child_starts_fresh_each_time(tmp_path: Path):
    script = tmp_path / "fresh.py"
    script.write_text(SCRIPT)
    for _ in range(2):  # the second run would see the first one's state if any leaked
        proc = run(script, figure_dir=tmp_path / "figures")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"out {tmp_path / 'figures'}\n"


def test_failures_and_exit_codes_come_back(tmp_path: Path):
    cases = {"boom.py": ("raise ValueError('boom')", 1, "ValueError: boom"),
             "stop.py": ("import sys; sys.exit(3)", 3, ""),
             "fails.py": ("assert 1 + 1 == 3, 'arithmetic'", 1, "AssertionError: arithmetic")}
    for name, (code, returncode, message) in cases.items():
        (tmp_path / name).write_text(code + "\n")
        proc = run(tmp_path / name)
        assert proc.returncode == returncode and message in proc.stderr, (name, proc.returncode, proc.stderr)
