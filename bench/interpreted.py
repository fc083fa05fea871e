"""The interpreted kernels that a cold first fit trains on (README "Performance", start-up).

    FASTMLP_DATA=../shared/data/mnist python bench/interpreted.py speed [--samples 40000] [--rounds 3]
    FASTMLP_DATA=../shared/data/mnist python bench/interpreted.py cold-fit [--batch-size 32] [--epochs 60]

``speed``: one thread, 784-128-10 sigmoid on MNIST; each kernel trains ``partial_fit`` epochs of
``--samples`` images in turn (medians of ``--rounds``): the interpreted mini-batch kernel against
the serial twin at batch 32, 128 and 1,024, and the interpreted per-sample kernel against the
compiled one. The kernel is chosen as the backend chooses it on a cold start (a second process
that is still compiling) or for good (the serial twin), so the whole fit is timed.

``cold-fit``: a new process on an empty Numba cache fits ``--epochs`` MNIST epochs, as a user's
first run does (with the second compiling process); prints when the compiled kernel appeared in
the cache, each epoch's seconds and the whole run's.
"""

import argparse
import os
import subprocess
import sys
import tempfile

SPEED = r"""
import json, os, time
os.environ["FASTMLP_BACKGROUND_COMPILE"] = "0"
import numpy as np, fastmlp


class Compiling:  # the second process, still compiling
    def poll(self):
        return None


X, y, _, _ = fastmlp.load_mnist()
X, y = X[:SAMPLES], y[:SAMPLES]
rows = []
for batch_size, kernels in ((32, ("interpreted", "serial")), (128, ("interpreted", "serial")),
                            (1024, ("interpreted", "serial")), (1, ("interpreted", "compiled"))):
    speeds = {name: [] for name in kernels}
    for _ in range(ROUNDS):
        for name in kernels:
            model = fastmlp.MLP([784, 128, 10], seed=0, threads=1)
            model.fit(X[:batch_size], y[:batch_size], batch_size=batch_size, lr=0.05, progress=False)
            if name == "interpreted" and batch_size == 1:
                model.backend_._persample_compiling = Compiling()
            elif name == "interpreted":
                model.backend_._parallel_compiling = Compiling()
            elif name == "serial":
                model.backend_._serial = {"uint8": True}
            tic = time.perf_counter()
            model.partial_fit(X, y)
            speeds[name].append(len(X) / (time.perf_counter() - tic))
    medians = {name: float(np.median(values)) for name, values in speeds.items()}
    rows.append({"batch_size": batch_size, "samples_per_second": medians,
                 "ratio": medians["interpreted"] / medians[kernels[1]]})
print(json.dumps(rows))
"""

COLD_FIT = r"""
import glob, json, os, threading, time
tic = time.perf_counter()
import fastmlp
seen = {}
name = "sgd.sgd_persample_chunk-" if BATCH == 1 else "minibatch.minibatch_sgd_chunk-"


def watch():
    while "stored" not in seen:
        if glob.glob(os.path.join(os.environ["NUMBA_CACHE_DIR"], "**", name + "*.nbi"), recursive=True):
            seen["stored"] = time.perf_counter() - tic
        time.sleep(0.05)


threading.Thread(target=watch, daemon=True).start()
X, y, _, _ = fastmlp.load_mnist()
model = fastmlp.MLP([784, 128, 10])
model.fit(X, y, epochs=EPOCHS, batch_size=BATCH, progress=False)
print(json.dumps({"kernel_stored_after": seen.get("stored"), "run_seconds": time.perf_counter() - tic,
                  "compile_seconds": model.compile_seconds_, "epoch_seconds": model.history_.seconds}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "cold-fit"])
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    if args.mode == "speed":
        code = SPEED.replace("SAMPLES", str(args.samples)).replace("ROUNDS", str(args.rounds))
        print(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout, end="")
        return
    with tempfile.TemporaryDirectory() as cache_dir:
        code = COLD_FIT.replace("EPOCHS", str(args.epochs)).replace("BATCH", str(args.batch_size))
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        print(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                             env=env).stdout, end="")


if __name__ == "__main__":
    main()
