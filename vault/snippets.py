"""Run snippet files as scripts: `python -m vault.snippets [FILE ...]` (what `make figures` runs).

Each snippet runs in its own process with `snippets/` on the path (for the `_figures` helper), the
Agg backend, a CPU-time limit, and the same numeric code paths on any x86 machine. Its assertions
and claims (vault/claims.py) are the test. The process is forked from a zygote (vault/zygote.py)
that has imported the heavy libraries once, which saves about 10 s of CPU per snippet.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .claims import LOG_ENV

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = ROOT / "snippets"
# Figures saved with exact=False (snippets/_figures.py): the fingerprint of the code that drew each,
# written by `make figures`, and the marker beside a re-made one that asks the tests to compare it.
FIGURE_SOURCES = SNIPPETS / "_figure-sources.json"
INEXACT_SUFFIX = ".inexact"
TIME_LIMIT_S = 120
# The same numbers on any x86 machine, as far as the libraries allow: one thread (so one summation
# order), the AVX2 kernels of PyTorch, oneDNN, OpenBLAS and OpenCV, not whatever this CPU has, and
# MKL's COMPATIBLE branch: its AVX2 branch is Intel's alone (an AMD CPU silently gets MKL's own
# choice, and other numbers). What still moves between machines is measured by `make spread`.
DETERMINISTIC_ENV = {
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell", "OPENCV_CPU_DISABLE": "AVX512-SKX",
}


# A re-made figure may differ from the committed one by anti-aliasing noise (a curve moved by a
# fraction of a pixel changes pixels by less than a quarter of full scale); a changed digit in a
# title or a moved curve changes a hundred pixels or more by more than that.
PIXEL_CHANGE = 0.25


def changed_pixels(made: Path, committed: Path) -> int | None:
    """How many pixels differ by more than PIXEL_CHANGE, or None if the sizes differ."""
    import matplotlib.image
    import numpy as np
    a, b = matplotlib.image.imread(made), matplotlib.image.imread(committed)
    if a.shape != b.shape:
        return None
    return int((np.abs(a - b).max(axis=-1) > PIXEL_CHANGE).sum())


def snippet_files() -> list[Path]:
    return sorted(p for p in SNIPPETS.rglob("*.py")
                  if not p.name.startswith("_") and "__pycache__" not in p.parts)


class Zygote:
    """vault/zygote.py, started on first use, one per process that runs snippets."""

    def __init__(self, code_path: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(SNIPPETS), "MPLBACKEND": "Agg", **DETERMINISTIC_ENV, **(code_path or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "vault.zygote", str(TIME_LIMIT_S)], cwd=ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        atexit.register(self.stop)

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()

    def run(self, path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            request = {"path": str(path), "env": env, "out": str(out), "err": str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
            if not reply:
                raise RuntimeError(f"the snippet zygote exited ({self.proc.wait()}) while running {path}")
            code = json.loads(reply)["returncode"]
            stderr = err.read_text(errors="replace")
            if code == -24:  # SIGXCPU
                stderr += f"\n{path.name}: stopped after {TIME_LIMIT_S} s of CPU time\n"
            stdout = out.read_text(errors="replace")
            return subprocess.CompletedProcess([sys.executable, str(path)], code, stdout, stderr)


_zygote: Zygote | None = None


def run(path: Path, figure_dir: Path | None = None, claims_log: Path | None = None) -> subprocess.CompletedProcess:
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = Zygote()
    env = {}
    if figure_dir is not None:
        env["KB_FIGURE_DIR"] = str(figure_dir)
    if claims_log is not None:
        env[LOG_ENV] = str(claims_log)
    return _zygote.run(path.resolve(), env)


def main(argv: list[str]) -> int:
    failed = 0
    for path in [Path(a).resolve() for a in argv] or snippet_files():
        proc = run(path)
        status = "ok" if proc.returncode == 0 else "FAILED"
        print(f"{status:6} {path.relative_to(ROOT)}")
        if proc.returncode:
            failed += 1
            print(proc.stderr[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
