"""Cold and warm start of the compiled core, each in a new process.

    python bench/startup.py [--batch-size 1|N] [--warm-runs 3] [--threads auto|N]

Each child process times, from before ``import fastmlp``, how long it takes until the first
training sample (784-128-10 sigmoid, float32; per-sample SGD, or with ``--batch-size N`` the
first mini-batch step) has been trained, and how much of that was the import. The first child runs with an empty Numba cache (cold: everything is
compiled), the following ones reuse what it stored (warm: kernels load from disk).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import time
tic = time.perf_counter()
import numpy as np
import fastmlp
imported = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.integers(0, 256, size=(BATCH, 784), dtype=np.uint8)
model = fastmlp.MLP([784, 128, 10], backend="numba", threads=THREADS)
model.fit(X, rng.integers(0, 10, size=BATCH), epochs=1, batch_size=BATCH, progress=False)
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - tic, "first_sample_seconds": done - tic,
                  "compile_or_load_seconds": model.compile_seconds_}))
"""


def run_child(cache_dir, threads, batch_size):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["NUMBA_CACHE_DIR"] = cache_dir
    code = "import json\n" + CHILD.replace("THREADS", repr(threads)).replace("BATCH", str(batch_size))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), check=True)
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--threads", default="auto", type=lambda text: text if text == "auto" else int(text))
    parser.add_argument("--batch-size", type=int, default=1, help="1: per-sample SGD; N > 1: one mini-batch step of N samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = run_child(cache_dir, args.threads, args.batch_size)
        warm = [run_child(cache_dir, args.threads, args.batch_size) for _ in range(args.warm_runs)]
    warm_first = sorted(w["first_sample_seconds"] for w in warm)[len(warm) // 2]
    print(json.dumps({"cold": cold, "warm": warm, "warm_first_sample_seconds_median": warm_first,
                      "threads": args.threads, "batch_size": args.batch_size}))


if __name__ == "__main__":
    main()
