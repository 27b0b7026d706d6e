"""A process that imports the snippets' heavy libraries once, then forks one child per snippet.

Importing torch, SciPy, scikit-learn and matplotlib, and torch's first
`use_deterministic_algorithms` call (which loads TorchDynamo), cost about 10 s of CPU: more than
most snippets' own work. The zygote pays that once per test worker. It is started by
vault/snippets.py with DETERMINISTIC_ENV already in its environment, so the libraries read the
same settings as a fresh interpreter would, and nothing is run or seeded before the fork: each
child starts from the state a fresh `python snippet.py` has after its imports.

Protocol, one JSON object per line: the request on stdin is {"path", "env", "out", "err"} (the
snippet, extra environment, files for its stdout and stderr); the reply on stdout is
{"returncode"}. The zygote exits when stdin closes.
"""
from __future__ import annotations

import importlib
import json
import os
import resource
import runpy
import sys
import traceback

PRELOAD = [
    "numpy", "scipy.linalg", "scipy.optimize", "scipy.ndimage", "scipy.signal", "scipy.stats",
    "matplotlib.pyplot", "cv2", "skimage", "sklearn.linear_model", "sklearn.metrics",
    "sklearn.model_selection", "torch", "torch.nn", "torch.nn.functional",
]


def preload() -> None:
    import matplotlib
    matplotlib.use("Agg")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # a library this checkout does not pin yet: the child imports what it has
            pass
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.use_deterministic_algorithms(True)  # loads its modules; the default is then restored
        torch.use_deterministic_algorithms(False)


def child(request: dict, cpu_limit_s: int) -> None:
    """Become `python <path>`: never returns."""
    code = 1
    try:
        path = request["path"]
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdout = sys.__stdout__  # the zygote pointed it at stderr, to keep its reply pipe clean
        os.environ.update(request["env"])
        os.chdir(os.path.dirname(path))
        sys.path[0] = os.path.dirname(path)  # as `python <path>` puts the script's folder first
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # not the zygote's request pipe
        sys.argv = [path]
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit_s, cpu_limit_s))  # SIGXCPU past it
        runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(cpu_limit_s: int) -> None:
    preload()
    replies = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the pipe
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request, cpu_limit_s)
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
