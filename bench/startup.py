"""Cold and warm start of the compiled core, each in a new process.

    python bench/startup.py [--batch-size 1|N] [--momentum F] [--warm-runs 3] [--threads auto|N] [--no-background-compile]
    python bench/startup.py --base REV [--rounds 3] [--batch-size 1|N] [--warm-runs 1]

Each child process times, from before ``import fastmlp``, how long it takes until the first
training sample (784-128-10 sigmoid, float32; per-sample SGD, or with ``--batch-size N`` the
first mini-batch step; with ``--momentum`` F > 0 per-sample training runs the general per-sample
kernel) has been trained, and how much of that was the import. The first child
runs with an empty Numba cache (cold: everything is compiled), the following ones reuse what it
stored (warm: kernels load from disk). A cold run of one sample exits before its second process
(``fastmlp._prewarm``) has stored the kernel itself; that process then finishes the kernel in the
background, and each child's next one starts once it has ended ("finishing_seconds": how long
after its child's exit), so the warm runs load the kernel stored (fastmlp before 2026-12-05
stopped that process at exit: a base revision that old has warm runs that load the kernel's
helpers one by one and train on the interpreted kernel). "stored_warm" runs come after that
second process's plan has been run to its end in this script. "numba_floor_seconds" is what any warm Numba program
pays before its first call: a child that imports NumPy and Numba and loads one cached function
(Numba also imports SciPy there when it is installed).

Issue 11's targets are in the output (``targets``) with whether this run met them
(``meets_targets``): the first per-sample sample within 5 s of ``import fastmlp`` on a cold cache
(the first mini-batch step within 10 s), warm starts under 1 s. The children run as a user's
program does: ``FASTMLP_BACKGROUND_COMPILE`` is taken out of their environment (its 0 measured
the cold start without its second process), unless ``--no-background-compile`` sets it to 0.

``--base REV`` alternates, ``--rounds`` times, a cold-and-warm measurement of git revision REV
(its ``fastmlp/`` and ``kernels/`` extracted to a temporary directory, laid out as installed,
first on PYTHONPATH) with one of the installed fastmlp: the host's speed changes from minute to
minute, so only such alternated runs compare two revisions. Run it inside the repository.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from fastmlp import _prewarm

CHILD = r"""
import time
tic = time.perf_counter()
import numpy as np
import fastmlp
imported = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.integers(0, 256, size=(BATCH, 784), dtype=np.uint8)
model = fastmlp.MLP([784, 128, 10], backend="numba", threads=THREADS)
model.fit(X, rng.integers(0, 10, size=BATCH), epochs=1, batch_size=BATCH, momentum=MOMENTUM, progress=False)
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - tic, "first_sample_seconds": done - tic,
                  "compile_or_load_seconds": getattr(model, "compile_seconds_", None)}))
"""

FLOOR = r"""
import json
import time
tic = time.perf_counter()
import numpy as np
import numba

@numba.njit(cache=True)
def first(a):
    return a[0] + 1.0

first(np.zeros(2))
print(json.dumps({"first_sample_seconds": time.perf_counter() - tic}))
"""


BACKGROUND_COMPILE_OFF = False  # --no-background-compile
COLD_TARGET_SECONDS = {"per-sample": 5.0, "mini-batch": 10.0}  # issue 11: the first sample / step
WARM_TARGET_SECONDS = 1.0


def verdict(result, batch_size):
    """Issue 11's targets for this path and whether ``measure``'s ``result`` met them."""
    cold_target = COLD_TARGET_SECONDS["per-sample" if batch_size == 1 else "mini-batch"]
    warm = max(result["warm_first_sample_seconds_median"], result["stored_warm_first_sample_seconds_median"])
    return ({"cold_first_sample_seconds": cold_target, "warm_first_sample_seconds": WARM_TARGET_SECONDS},
            {"cold": result["cold"]["first_sample_seconds"] <= cold_target, "warm": warm < WARM_TARGET_SECONDS})


def child_env(cache_dir, source=None):
    """The environment of a child on Numba cache ``cache_dir``, with ``source`` (a directory)
    first on PYTHONPATH, else none."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTMLP_BACKGROUND_COMPILE")}
    env["NUMBA_CACHE_DIR"] = cache_dir
    if BACKGROUND_COMPILE_OFF:
        env["FASTMLP_BACKGROUND_COMPILE"] = "0"
    if source is not None:
        env["PYTHONPATH"] = source
    return env


def run_child(cache_dir, threads, batch_size, momentum=0.0, source=None, script=None):
    """One child's timings; ``source``: see ``child_env``; ``script``: a file to run in place of
    CHILD."""
    env = child_env(cache_dir, source)
    code = "import json\n" + CHILD.replace("THREADS", repr(threads)).replace("BATCH", str(batch_size)).replace(
        "MOMENTUM", repr(momentum))
    command = [sys.executable, script] if script else [sys.executable, "-c", code]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tempfile.gettempdir())
    out, err = child.communicate()
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command, out, err)
    timings = json.loads(out)
    tic = time.perf_counter()
    if not _prewarm.wait_for_finishing(child.pid, timeout=900):
        raise RuntimeError(f"the second process of child {child.pid} still compiles after 900 s")
    timings["finishing_seconds"] = time.perf_counter() - tic
    return timings


def store_the_rest(cache_dir, args, source=None):
    """Run the cold fit's second-process plan to its end (plain per-sample: the kernel after its
    helpers; mini-batch: the parallel kernel). The general per-sample kernel (momentum) has none:
    the fit's process compiles and stores it itself."""
    plan = "mini-batch" if args.batch_size > 1 else ("per-sample" if args.momentum == 0 else None)
    if plan is not None:
        subprocess.run([sys.executable, "-m", "fastmlp._prewarm", plan, "float32", "uint8"],
                       env=child_env(cache_dir, source), cwd=tempfile.gettempdir(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(args, source=None):
    """A cold child, then ``args.warm_runs`` warm ones, then as many after ``store_the_rest``, on
    a cache of their own."""
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = run_child(cache_dir, args.threads, args.batch_size, args.momentum, source)
        warm = [run_child(cache_dir, args.threads, args.batch_size, args.momentum, source)
                for _ in range(args.warm_runs)]
        store_the_rest(cache_dir, args, source)
        stored = [run_child(cache_dir, args.threads, args.batch_size, args.momentum, source)
                  for _ in range(args.warm_runs)]
    return {"cold": cold, "warm": warm, "stored_warm": stored,
            "warm_first_sample_seconds_median": statistics.median(w["first_sample_seconds"] for w in warm),
            "stored_warm_first_sample_seconds_median": statistics.median(w["first_sample_seconds"] for w in stored)}


def numba_floor():
    """Median of three warm runs of FLOOR (a file: Numba caches nothing for ``python -c``)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        script = os.path.join(cache_dir, "floor.py")
        with open(script, "w") as file:
            file.write(FLOOR)
        run_child(cache_dir, None, None, script=script)  # stores the function
        return statistics.median(run_child(cache_dir, None, None, script=script)["first_sample_seconds"]
                                 for _ in range(3))


def extract(revision, directory):
    """``revision``'s fastmlp/ and kernels/ in ``directory``, with fastmlp/kernels pointing at
    kernels/ as the installed package has it (pyproject.toml's package-dir)."""
    archive = os.path.join(directory, "source.tar")
    subprocess.run(["git", "archive", "-o", archive, revision, "fastmlp", "kernels"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    os.symlink(os.path.join("..", "kernels"), os.path.join(directory, "fastmlp", "kernels"))
    return directory


def compare(args):
    """Alternated rounds of ``args.base`` and the installed fastmlp."""
    with tempfile.TemporaryDirectory() as directory:
        source = extract(args.base, directory)
        rounds = []
        for _ in range(args.rounds):
            rounds.append({"base": measure(args, source), "installed": measure(args)})
    summary = {}
    for side in ("base", "installed"):
        summary[side] = {
            "cold_first_sample_seconds": [r[side]["cold"]["first_sample_seconds"] for r in rounds],
            "warm_first_sample_seconds_median": [r[side]["warm_first_sample_seconds_median"] for r in rounds],
            "stored_warm_first_sample_seconds_median": [r[side]["stored_warm_first_sample_seconds_median"]
                                                        for r in rounds]}
    return {"base": args.base, "rounds": rounds, "summary": summary}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--threads", default="auto", type=lambda text: text if text == "auto" else int(text))
    parser.add_argument("--batch-size", type=int, default=1, help="1: per-sample SGD; N > 1: one mini-batch step of N samples")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0: plain SGD)")
    parser.add_argument("--base", help="a git revision to alternate with the installed fastmlp")
    parser.add_argument("--rounds", type=int, default=3, help="with --base: rounds of (base, installed)")
    parser.add_argument("--no-background-compile", action="store_true",
                        help="children with FASTMLP_BACKGROUND_COMPILE=0 (default: fastmlp's own settings)")
    args = parser.parse_args()
    if args.warm_runs < 1 or args.rounds < 1:
        parser.error("--warm-runs and --rounds must be at least 1")
    global BACKGROUND_COMPILE_OFF
    BACKGROUND_COMPILE_OFF = args.no_background_compile
    if args.base:
        result = compare(args)
    else:
        result = measure(args)
        result["targets"], result["meets_targets"] = verdict(result, args.batch_size)
    result["background_compile"] = not BACKGROUND_COMPILE_OFF
    result.update(threads=args.threads, batch_size=args.batch_size, momentum=args.momentum,
                  numba_floor_seconds=numba_floor())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
