#!/bin/bash
# The peers table of issue 12 (BENCHMARKS.md): fastmlp's numba and NumPy backends beside PyTorch,
# JAX and scikit-learn, one MNIST epoch per repeat, 3 interleaved repeats, for 784-128-10 sigmoid
# (60,000 samples) and 784-800-10, 784-500-150-10 relu (20,000 samples), batch 1, 32, 128, 1024.
# Prints the machine, then each run's table and footer; with OUT set, also writes each run's
# --json records to $OUT-sigmoid.json and $OUT-relu.json (the tables then come from a second,
# separate run: --json replaces the table).
# usage: FASTMLP_DATA=DIR [PYTHON=python] [OUT=prefix] bench/peers_table.sh
#   (needs fastmlp[peers]: torch, jax, scikit-learn; about 10 minutes on 2 cores)
PY=${PYTHON:-python}
echo "== machine $(date -u +%FT%TZ)"; lscpu | grep "Model name"; grep -m2 "cpu family\|model\s" /proc/cpuinfo
grep -m1 -o "avx512f" /proc/cpuinfo || echo "no avx512f"; uptime
run() {
    if [ -n "$OUT" ]; then
        $PY -m fastmlp bench --peers --batch-sizes 1,32,128,1024 --repeats 3 --no-progress --json "$@" > "$OUT-$NAME.json"
    else
        $PY -m fastmlp bench --peers --batch-sizes 1,32,128,1024 --repeats 3 --no-progress "$@"
    fi
}
echo "== 784-128-10 sigmoid $(date -u +%T)"
NAME=sigmoid run --layers 784,128,10 --activations sigmoid
echo "== 784-800-10 and 784-500-150-10 relu $(date -u +%T)"
NAME=relu run --layers 784,500,150,10 --layers 784,800,10 --activations relu --samples 20000
echo "== done $(date -u +%T)"; uptime
