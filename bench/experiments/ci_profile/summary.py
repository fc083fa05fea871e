"""Totals of a profiled test run (sitecustomize.py): python summary.py CIPROF_DIR [N]

Prints the pytest process's CPU and compile seconds, its compiles by function and by test, the
other processes' CPU grouped by Numba cache folder (a cold-cache job is one folder), and, when
tests.json is there, the tests that took the most wall time with their CPU in the pytest process.
"""

import collections
import glob
import json
import os
import sys


def main():
    folder = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    records = [json.load(open(path)) for path in glob.glob(os.path.join(folder, "*.json"))
               if not path.endswith("tests.json")]
    compile_of = lambda record: sum(seconds for _, seconds in record["compiles"].values())  # noqa: E731
    suite = max(records, key=lambda record: record["cpu"])  # the pytest process
    others = [record for record in records if record is not suite]
    print(f"{len(records)} processes, {sum(r['cpu'] for r in records):.0f} s CPU; pytest process "
          f"{suite['cpu']:.0f} s CPU ({compile_of(suite):.0f} s compiling) in {suite['wall']:.0f} s; "
          f"the others {sum(r['cpu'] for r in others):.0f} s CPU ({sum(map(compile_of, others)):.0f} s compiling)")

    by_function = collections.defaultdict(lambda: [0, 0.0])
    by_test = collections.defaultdict(float)
    for key, (count, seconds) in suite["compiles"].items():
        test, function = key.split(" | ")
        by_function[function][0] += count
        by_function[function][1] += seconds
        by_test[test.split(" (")[0]] += seconds
    print("\nthe pytest process's compiles by function (seconds, compiles):")
    for function, (count, seconds) in sorted(by_function.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {seconds:6.1f} {count:4d}  {function}")
    print("\nthe pytest process's compiles by test:")
    for test, seconds in sorted(by_test.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {seconds:6.1f}  {test}")

    groups = collections.defaultdict(list)
    for record in others:
        groups[record["cache_dir"] or "(the installed cache)"].append(record)
    print("\nother processes by Numba cache folder (CPU, compiling, processes, first test, first command):")
    rows = sorted(groups.items(), key=lambda kv: -sum(r["cpu"] for r in kv[1]))
    for cache, group in rows[:top]:
        functions = collections.Counter()
        for record in group:
            for key, (_, seconds) in record["compiles"].items():
                functions[key.split(" | ")[1].rsplit(".", 1)[-1]] += seconds
        first = group[0]
        print(f"  {sum(r['cpu'] for r in group):6.1f} {sum(map(compile_of, group)):6.1f} {len(group):4d}  {cache[-30:]}"
              f"  {first['test'].split(' (')[0][-70:]}  {' '.join(first['argv'])[:50]}")
        print("         " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in functions.most_common(4)))

    tests_file = os.path.join(folder, "tests.json")
    if os.path.exists(tests_file):
        tests = json.load(open(tests_file))
        print(f"\n{len(tests)} tests, {sum(w for w, _ in tests.values()):.0f} s wall, "
              f"{sum(c for _, c in tests.values()):.0f} s CPU in the pytest process; the longest (wall, CPU):")
        for test, (wall, cpu) in sorted(tests.items(), key=lambda kv: -kv[1][0])[:top]:
            print(f"  {wall:6.1f} {cpu:6.1f}  {test[-110:]}")


if __name__ == "__main__":
    main()
