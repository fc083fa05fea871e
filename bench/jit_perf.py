"""Where a training kernel's time goes, instruction by instruction: perf samples of Numba's JIT code.

    FASTMLP_DATA=../shared/data/mnist python bench/jit_perf.py [--batch-size 1] [--momentum 0]
        [--weight-decay 0] [--optimizer sgd|adam] [--layers 784,128,10] [--activation sigmoid]
        [--float-input] [--threads 1] [--epochs 6] [--windows 12] [--disassemble N]

``perf`` (linux-tools) cannot name Numba's compiled code: it lives in anonymous executable
mappings without symbols, so ``perf report`` shows bare addresses. This starts a child process
that trains the setup for a few hundred samples (the kernel compiled or loaded from the cache)
and writes the bytes of every anonymous executable mapping and the addresses of Numba's
reference-count functions (NRT_incref, NRT_decref); ``perf record -F 4000`` then attaches to it
while it trains ``--epochs`` epochs of MNIST in a fixed random order (float32, plain SGD unless
an optimizer option is given), so that loading and compiling are left out. Each sample's instruction address is then put down to one of: a
mapping (by its start address; a kernel's helpers may sit in another kernel's mapping, where
Numba's linker found them first), the reference counting, or a shared object (the interpreter,
NumPy, libm, the kernel's own). Within the mappings, the 256-byte windows of machine code with the most samples
are listed with their share and their most frequent instructions (``objdump``), which tells a
vectorised loop (``vfmadd231ps``) from a scalar one (``vfmadd231ss``) or a search (``cmp``,
``jge``).

Read the shares with care: a sample lands on the instruction that waits, not on what it waits
for. The first load of a cache line that misses carries the miss (a search over a CSR row of
pixel indices is the row's first touch, and kept about the same share of a mini-batch epoch as
a binary search with branches, one without and a vectorised count: the row's misses, not the
search); a locked increment right after a loop of stores waits for the store buffer to drain
(the reference counting held about 20% of a per-sample epoch's samples, but views without
reference counts, which took 64% of its locked operations away, ran at 1.01x). Compare the
windows' shares before and after a change, then confirm with ``bench/ab_kernels.py``.
``--disassemble N`` prints the N hottest windows instruction by instruction, each with its
samples: which load waits (a binary search's ``cmp`` after a ``movslq``), which call.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

WINDOW = 256
REFCOUNT = "reference counting (NRT_incref, NRT_decref)"


def attribute(samples, regions, refcount):
    """Counter of where each sample (instruction address, shared object or "[unknown]") falls:
    ``refcount`` [(lo, hi)] first (it lies inside a mapping), then ``regions`` [(lo, hi, ...)]
    by their start as hex, else its shared object's file name (the interpreter, NumPy, libm)."""
    counts = collections.Counter()
    for ip, dso in samples:
        if any(lo <= ip < hi for lo, hi in refcount):
            counts[REFCOUNT] += 1
            continue
        for lo, hi, *_ in regions:
            if lo <= ip < hi:
                counts[f"{lo:#x}"] += 1
                break
        else:
            counts[os.path.basename(dso.strip("()"))] += 1
    return counts


def parse_objdump(text, full=False):
    """{address: mnemonic} of ``objdump -D`` output lines ``  addr:\\tbytes\\tmnemonic operands``
    (with ``full``, {address: the instruction with its operands})."""
    instructions = {}
    for line in text.splitlines():
        match = re.match(r"\s*([0-9a-f]+):\t[0-9a-f ]+\t(\S+.*)", line)
        if match:
            instruction = match.group(2).strip()
            instructions[int(match.group(1), 16)] = instruction if full else instruction.split()[0]
    return instructions


def hot_windows(ips, lo, hi, instructions, top):
    """The ``top`` WINDOW-byte windows of [lo, hi) with the most samples: (offset from lo, share
    of the samples in [lo, hi), the window's most frequent mnemonics as (name, count))."""
    inside = [ip for ip in ips if lo <= ip < hi]
    windows = collections.Counter((ip - lo) // WINDOW for ip in inside)
    rows = []
    for window, n in windows.most_common(top):
        start = lo + window * WINDOW
        names = collections.Counter(name for address, name in instructions.items() if start <= address < start + WINDOW)
        rows.append((window * WINDOW, n / len(inside), names.most_common(6)))
    return rows


def child(args, info_path):
    import numpy as np
    from numba.core.runtime import nrt

    import fastmlp
    from fastmlp import optim, trainer
    from fastmlp._numba_backend import compiling_ahead
    from fastmlp.backends import make_backend
    from fastmlp.network import Architecture, init_params

    X, y, _, _ = fastmlp.load_mnist(os.environ.get("FASTMLP_DATA"), download=False)
    X = X.reshape(len(X), -1)
    if args.float_input:
        X = (X / np.float32(255)).astype(np.float32)
    layers = tuple(int(n) for n in args.layers.split(","))
    arch = Architecture(layers, args.activation, "cross_entropy", dtype="float32")
    backend = make_backend("numba", arch, args.threads)
    data = backend.prepare(X)
    params = init_params(arch, "auto", seed=0)
    optimizer = optim.Optimizer(optimizer=args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay)
    state = optim.State.fresh(optimizer, params, seed=0)
    order = np.random.default_rng(0).permutation(len(y)).astype(np.int64)
    lr = 1e-3 if args.optimizer == "adam" else 0.01
    # the kernel compiled here or loaded, never the interpreted one a cold start trains on while a
    # second process compiles (its helpers called from Python: other mappings, reference counts)
    with compiling_ahead():
        trainer.train_epoch(backend, params, data, y, order[:400], lr, args.batch_size, optimizer=optimizer,
                            state=state)

    regions = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if "x" in fields[1] and len(fields) < 6:  # executable, anonymous: JIT code
                path = os.path.join(os.path.dirname(info_path), f"region-{lo:x}.bin")
                with open(path, "wb") as out:
                    out.write(ctypes.string_at(lo, hi - lo))
                regions.append((lo, hi, path))
    library = nrt.rtsys.library
    incref, decref = (library.get_pointer_to_function(name) for name in ("NRT_incref", "NRT_decref"))
    with open(info_path + ".part", "w") as out:
        json.dump({"regions": regions, "refcount": [(incref, incref + 16), (decref, decref + 32)]}, out)
    os.replace(info_path + ".part", info_path)
    while not os.path.exists(info_path + ".go"):  # perf attaches meanwhile
        time.sleep(0.01)
    for _ in range(args.epochs):
        trainer.train_epoch(backend, params, data, y, order, lr, args.batch_size, optimizer=optimizer, state=state)
    open(info_path + ".done", "w").close()
    while not os.path.exists(info_path + ".exit"):  # perf stops first: exiting (the interpreter's
        time.sleep(0.01)  # last garbage collection over Numba's objects) is not training


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="784,128,10")
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--float-input", action="store_true", help="float32 pixels / 255 instead of uint8")
    parser.add_argument("--threads", default="1", help="1 (default), 2 or auto")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--windows", type=int, default=12, help="hot windows listed per mapping")
    parser.add_argument("--disassemble", type=int, default=0, metavar="N",
                        help="print the N hottest windows' instructions, each with its samples")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.threads = args.threads if args.threads == "auto" else int(args.threads)
    if args.child:
        child(args, args.child)
        return
    for tool in ("perf", "objdump"):
        if shutil.which(tool) is None:
            sys.exit(f"jit_perf.py needs {tool} on PATH")
    with tempfile.TemporaryDirectory() as work:
        info, data = os.path.join(work, "info.json"), os.path.join(work, "perf.data")
        command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", info]
        trainer = subprocess.Popen(command)
        while not os.path.exists(info):
            if trainer.poll() is not None:
                sys.exit(f"the training process failed (exit status {trainer.returncode})")
            time.sleep(0.05)
        recorder = subprocess.Popen(["perf", "record", "-q", "-F", "4000", "-o", data, "-p", str(trainer.pid)])
        time.sleep(1.0)  # perf's start
        open(info + ".go", "w").close()
        while not os.path.exists(info + ".done"):
            if trainer.poll() is not None:
                recorder.send_signal(signal.SIGINT)
                sys.exit(f"the training process failed (exit status {trainer.returncode})")
            time.sleep(0.05)
        recorder.send_signal(signal.SIGINT)  # perf writes its data and stops
        recorder.wait()
        open(info + ".exit", "w").close()
        trainer.wait()
        script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,dso"], capture_output=True, text=True, check=True)
        samples = [(int(ip, 16), dso) for ip, dso in (line.split(None, 1) for line in script.stdout.splitlines() if line.strip())]
        ips = [ip for ip, _ in samples]
        with open(info) as f:
            found = json.load(f)
        counts = attribute(samples, found["regions"], found["refcount"])
        total = sum(counts.values())
        print(f"{total} samples at 4 kHz ({' '.join(sys.argv[1:]) or 'defaults'})")
        for where, n in counts.most_common():
            print(f"  {n / total:6.1%}  {where}")
        for lo, hi, path in found["regions"]:
            if counts[f"{lo:#x}"] < 0.05 * total:
                continue
            dump = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", f"--adjust-vma={lo}", path],
                                  capture_output=True, text=True, check=True).stdout
            print(f"\nmapping {lo:#x} ({hi - lo} bytes): hottest {WINDOW}-byte windows")
            hot = hot_windows(ips, lo, hi, parse_objdump(dump), args.windows)
            for offset, share, names in hot:
                print(f"  +{offset:#7x} {share:6.1%}  " + " ".join(f"{name}:{n}" for name, n in names))
            at = collections.Counter(ip for ip in ips if lo <= ip < hi)
            full = parse_objdump(dump, full=True)
            for offset, share, _ in hot[:args.disassemble]:
                print(f"\n  window +{offset:#x} ({share:.1%}): samples, offset, instruction")
                for address in sorted(a for a in full if lo + offset <= a < lo + offset + WINDOW):
                    print(f"  {at[address]:6d}  +{address - lo:#7x}  {full[address]}")


if __name__ == "__main__":
    main()
