"""Two cold first runs of one plan started together on one empty Numba cache (audit 34 #4).

    python bench/experiments/cold_pair.py [--src DIR] [--batch-size 32] [--data DIR]

Starts two ``fastmlp train --layers 784,32,10 --epochs 1 --batch-size B`` at once, each under
``strace -f -e trace=rename,renameat,renameat2`` (Numba stores a cache file by a rename), on an
empty ``NUMBA_CACHE_DIR`` with the background compile on, and reports the pair's wall time, each
run's ``compile_seconds``, and how many cache data files (``.nbc``) were stored by more than one
process: a kernel compiled twice. ``--src`` runs another checkout's ``fastmlp`` (PYTHONPATH), to
compare revisions (``git archive REV fastmlp kernels | tar -x -C DIR``, then link
``DIR/fastmlp/kernels`` to ``../kernels``). Needs strace and the MNIST files (FASTMLP_DATA or
the download cache), of which the runs read the first 2,000 training and 300 test images, written
uncompressed to a folder of their own: both runs reach their fit within milliseconds of each
other (a full MNIST load took each a second or more, by which time one had often marked its
compile, and the pair did not meet the race).
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

STORED = re.compile(r'(\d+)\s+rename(?:at2?)?\(.*?"[^"]+".*?"([^"]+\.nbc)".*= 0')


def write_tiny_mnist(folder):
    """The first 2,000 training and 300 test images of MNIST, as uncompressed IDX files."""
    import struct

    import numpy as np

    import fastmlp

    X, y, X_test, y_test = fastmlp.load_mnist()
    os.makedirs(folder)
    for name, array, magic in [("train-images-idx3-ubyte", X[:2000].reshape(-1, 28, 28), 2051),
                               ("train-labels-idx1-ubyte", y[:2000], 2049),
                               ("t10k-images-idx3-ubyte", X_test[:300].reshape(-1, 28, 28), 2051),
                               ("t10k-labels-idx1-ubyte", y_test[:300], 2049)]:
        header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
        with open(os.path.join(folder, name), "wb") as file:
            file.write(header + np.asarray(array, np.uint8).tobytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=None, help="a checkout whose fastmlp to run (default: the installed one)")
    parser.add_argument("--batch-size", default="32")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tiny = os.path.join(scratch, "tiny")
        write_tiny_mnist(tiny)
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(scratch, "cache"), FASTMLP_BACKGROUND_COMPILE="1")
        if args.src:
            env["PYTHONPATH"] = args.src
        command = [sys.executable, "-m", "fastmlp", "train", "--data", tiny, "--layers", "784,32,10", "--epochs", "1",
                   "--no-progress", "--json", "--batch-size", args.batch_size]
        tic = time.perf_counter()
        runs = [subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=rename,renameat,renameat2", "-o",
                                  os.path.join(scratch, f"trace{k}")] + command, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True) for k in range(2)]
        outputs = [run.communicate()[0] for run in runs]
        seconds = time.perf_counter() - tic
        compile_seconds = [round(json.loads(out)["compile_seconds"], 2) for out in outputs]
        stored = collections.defaultdict(set)
        for k in range(2):
            with open(os.path.join(scratch, f"trace{k}")) as trace:
                for line in trace:
                    match = STORED.match(line)
                    if match:
                        stored[os.path.basename(match.group(2))].add(match.group(1))
        processes = set().union(*stored.values()) if stored else set()
        twice = sorted(name for name, pids in stored.items() if len(pids) > 1)
        print(json.dumps({"pair_seconds": round(seconds, 1), "compile_seconds": compile_seconds,
                          "data_files": len(stored), "storing_processes": len(processes),
                          "stored_by_two_or_more": len(twice), "examples": twice[:4]}))


if __name__ == "__main__":
    main()
