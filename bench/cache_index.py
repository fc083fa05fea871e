"""What Numba's cache holds of fastmlp's kernels: every compiled function and its signatures.

    python bench/cache_index.py [--cache DIR] [--all]

Reads the cache index files (``*.nbi``) of ``fastmlp.kernels`` (next to the installed sources,
or ``--cache``, as ``NUMBA_CACHE_DIR`` would place them) and prints, for each function cached
with more than one signature (all of them with ``--all``), the argument positions where its
signatures differ and the types there. A function compiled twice for the same work shows up
as a type that should not be there: a ``readonly array`` (read-only input reached a kernel), a
``Literal[int]`` (a constant passed where the other callers pass a variable), an ``A`` layout
(a non-contiguous view). Each is a whole compile more on a cold start and a second cache entry.
Run it after a cold run of the test suite, or of the program whose start-up you care about.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

SUSPECT = ("readonly", "Literal[", ", A)")


def cached_signatures(folder):
    """{function name: [signature (tuple of Numba types)]} from the index files in ``folder``."""
    found = {}
    for index in sorted(Path(folder).rglob("*.nbi")):
        with open(index, "rb") as f:
            pickle.load(f)  # Numba's version stamp
            try:
                _, overloads = pickle.loads(f.read())
            except Exception as error:  # noqa: BLE001 - another Numba's format: say so, go on
                print(f"{index.name}: unreadable ({type(error).__name__}: {error})")
                continue
        name = index.name.rsplit(".", 2)[0]  # module.function-LINE (of module.function-LINE.py311.nbi)
        found.setdefault(name, []).extend(key[0] for key in overloads)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="NUMBA_CACHE_DIR's folder (default: beside the installed kernels)")
    parser.add_argument("--all", action="store_true", help="every function, also those with one signature")
    args = parser.parse_args(argv)
    if args.cache:
        folder = Path(args.cache)
    else:
        import fastmlp.kernels

        folder = Path(fastmlp.kernels.__file__).parent
    functions = cached_signatures(folder)
    if not functions:
        print(f"no cached kernels under {folder}")
        return 1
    suspects = 0
    for name, signatures in sorted(functions.items()):
        if len(signatures) < 2 and not args.all:
            continue
        differ = sorted({i for a in signatures for b in signatures for i, (x, y) in enumerate(zip(a, b)) if x != y})
        print(f"{name}: {len(signatures)} signature(s)")
        for i in differ:
            kinds = sorted({str(signature[i]) for signature in signatures})
            flagged = [kind for kind in kinds if any(mark in kind for mark in SUSPECT)]
            suspects += bool(flagged)
            print(f"    argument {i}: {', '.join(kinds)}" + (f"   <- {', '.join(flagged)}" if flagged else ""))
    print(f"{len(functions)} functions cached under {folder}; {suspects} argument(s) with a suspect type")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
