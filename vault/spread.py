"""How far each bound number moves when the arithmetic runs another way: `make spread [FILES=...]`.

vault/snippets.py pins seeds, threads and the libraries' code paths, but another x86 CPU can still
sum the same floats in another order, and a training run amplifies a last-bit difference into a
different accuracy. Each code path below is one way another machine computes. Every snippet runs
once per path, with its claims surveyed (logged, not raised); the report lists each claim whose
value leaves what its text allows on some path, with the range seen, and each figure that differs
from the pinned path's. Such a number belongs on its page as a band that holds the range
(CONTRIBUTING.md, "Numbers bound to code"). The report is figures to read, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .claims import LOG_ENV, SURVEY_ENV
from .snippets import INEXACT_SUFFIX, SNIPPETS, Zygote, changed_pixels, snippet_files

# The ways another x86 machine may compute what the pinned path computes here. MKL's AVX2 branch is
# what it runs on an Intel CPU when asked for AVX2, and its own choice elsewhere; oneDNN (PyTorch's
# convolutions) blocks its loops by the CPU's vector width and caches.
CODE_PATHS = {
    "pinned": {},
    "MKL's kernels for this CPU": {"MKL_CBWR": "AUTO"},
    "MKL's AVX2 branch": {"MKL_CBWR": "AVX2"},
    "oneDNN's SSE4.1 kernels": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def run_path(name: str, files: list[str], out: str) -> dict:
    """Run `files` on one code path: {file: {"returncode", "error", "claims": [...]}}; figures under `out`."""
    zygote = Zygote({**CODE_PATHS[name], SURVEY_ENV: "1"})
    results = {}
    for file in files:
        path = Path(file)
        rel = path.relative_to(SNIPPETS).as_posix()
        log = Path(out, rel + ".claims.jsonl")
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = zygote.run(path, {LOG_ENV: str(log), "KB_FIGURE_DIR": str(Path(out, "figures"))})
        claims = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        error = [line for line in proc.stderr.splitlines() if line.strip()][-1:] if proc.returncode else []
        results[rel] = {"returncode": proc.returncode, "error": error[0] if error else "", "claims": claims}
    zygote.stop()
    return results


def report(runs: dict[str, dict], work: Path) -> list[str]:
    lines = ["| snippet | line | claim | allows | " + " | ".join(runs) + " |",
             "|---|---|---|---|" + "---|" * len(runs)]
    pinned = runs["pinned"]
    for rel in pinned:
        values: dict[tuple[int, str], dict[str, list[float]]] = {}
        by_path_ok: dict[tuple[int, str], dict[str, list[bool]]] = {}
        for name, run in runs.items():
            for c in run[rel]["claims"]:
                values.setdefault((c["line"], c["text"]), {}).setdefault(name, []).append(c["value"])
                by_path_ok.setdefault((c["line"], c["text"]), {}).setdefault(name, []).append(c["ok"])
        for (line, text), by_path in sorted(values.items()):
            if all(ok for oks in by_path_ok[(line, text)].values() for ok in oks):
                continue
            interval = next(c["allows"] for run in runs.values() for c in run[rel]["claims"]
                            if (c["line"], c["text"]) == (line, text))
            cells = [", ".join(f"{v:.4g}" for v in by_path.get(name, [])) or "—" for name in runs]
            lines.append(f"| {rel} | {line} | {text} | {interval} | " + " | ".join(cells) + " |")
        for name, run in runs.items():
            if run[rel]["returncode"] != 0:
                lines.append(f"| {rel} | | fails on {name} | | {run[rel]['error'][:120]} |")
    figures = []
    for made in sorted((work / "pinned" / "figures").rglob("*.png")):
        rel = made.relative_to(work / "pinned" / "figures")
        if made.with_suffix(INEXACT_SUFFIX).is_file():  # saved with exact=False: the tests check its code instead
            continue
        for name in runs:
            other = work / name / "figures" / rel
            if name != "pinned" and other.is_file():
                changed = changed_pixels(other, made)
                if changed is None:
                    figures.append(f"- {rel}: {name} changes its size")
                elif changed > 0:
                    figures.append(f"- {rel}: {name} changes {changed} pixels")
    return lines + ["", "Exact figures that differ from the pinned path's (save them with exact=False):"] + \
        (figures or ["- none"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="snippet files (default: all)")
    args = parser.parse_args(argv)
    files = [str(Path(f).resolve()) for f in args.files] or [str(p) for p in snippet_files()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with ProcessPoolExecutor() as pool:
            futures = {name: pool.submit(run_path, name, files, str(work / name)) for name in CODE_PATHS}
            runs = {name: f.result() for name, f in futures.items()}
        print("\n".join(report(runs, work)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
