"""What a cold start compiles: every function Numba compiles in one fit, with its time.

    python bench/compile_events.py [--batch-size 1|N] [--momentum F] [--top 25]
    python bench/compile_events.py --share
    python bench/compile_events.py --base REV [...]

Runs, in a new process on an empty Numba cache, one fit of 784-128-10 sigmoid (float32, uint8
pixels, 64 random samples; per-sample SGD or mini-batch, plain or with momentum) and records
Numba's compile events (``numba.core.event``, "numba:compile"). ``--share`` runs instead the
mini-batch compile share of ``fastmlp._prewarm`` with every helper claimed by this process (all
the helpers a cold first mini-batch step needs, in one process). Prints JSON: the number of
functions compiled, the fit's (or share's) seconds, and the functions of longest "self" time
(their compile minus that of the functions compiled inside it). The second process a cold fit
starts (``fastmlp._prewarm``) compiles in its own process: this process's events are the fit's.
``--base REV``: the same for git revision REV's fastmlp and kernels (``startup.py --base``'s
checkout) in place of the installed fastmlp; run it inside the repository.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, tempfile, time
from numba.core import event

events = []


class Listener(event.Listener):
    def __init__(self):
        self.started = {}

    def on_start(self, ev):
        self.started[id(ev.data["dispatcher"]), str(ev.data["args"])] = time.perf_counter()

    def on_end(self, ev):
        function = ev.data["dispatcher"].py_func
        name = f"{function.__module__}:{function.__qualname__}:{function.__code__.co_firstlineno}"
        start = self.started.pop((id(ev.data["dispatcher"]), str(ev.data["args"])))
        events.append((start, time.perf_counter(), name))


event.register("numba:compile", Listener())
import numpy as np
import fastmlp
from fastmlp import _prewarm

tic = time.perf_counter()
if SHARE:
    _prewarm.compile_share(tempfile.mkdtemp(), np.dtype(np.float32), np.dtype(np.uint8))
else:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(64, 784), dtype=np.uint8)
    model = fastmlp.MLP([784, 128, 10])
    model.fit(X, rng.integers(0, 10, size=64), epochs=1, batch_size=BATCH, momentum=MOMENTUM, progress=False)
print(json.dumps({"seconds": time.perf_counter() - tic, "events": events}))
"""


def self_times(events):
    """(self seconds, seconds, name) of each event: its time minus that of the events directly
    inside it (Numba compiles a callee while typing its caller)."""
    rows = []
    for start, end, name in events:
        inner = [(s, e) for s, e, _ in events if start < s and e <= end]
        direct = [(s, e) for s, e in inner if not any(o != (s, e) and o[0] <= s and e <= o[1] for o in inner)]
        rows.append((end - start - sum(e - s for s, e in direct), end - start, name))
    return sorted(rows, reverse=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--share", action="store_true", help="the mini-batch compile share instead of a fit")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--base", help="a git revision to run in place of the installed fastmlp")
    args = parser.parse_args()
    code = (CHILD.replace("SHARE", repr(args.share)).replace("BATCH", str(args.batch_size))
            .replace("MOMENTUM", repr(args.momentum)))
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["NUMBA_CACHE_DIR"] = cache_dir
        if args.base:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from startup import extract

            env["PYTHONPATH"] = extract(args.base, tempfile.mkdtemp(dir=cache_dir))
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              cwd=tempfile.gettempdir(), check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    rows = self_times(result["events"])
    print(json.dumps({
        "functions": len(rows), "seconds": round(result["seconds"], 2),
        "self_seconds_total": round(sum(r[0] for r in rows), 2),
        "top": [{"self": round(r[0], 2), "total": round(r[1], 2), "function": r[2]} for r in rows[: args.top]],
    }, indent=1))


if __name__ == "__main__":
    main()
