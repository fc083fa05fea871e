#!/bin/bash
# Two short scripts back to back on one empty Numba cache, the second started as the first ends
# (BENCHMARKS.md, session 44): each prints its pid, compile seconds, samples/s and the second
# processes it started; then the time until no fastmlp._prewarm process is left, and a third run.
# usage: bench/back_to_back.sh SOURCE_TREE BATCH_SIZE   (FASTMLP_DATA: the MNIST files)
SRC=$1; B=$2
export PYTHONPATH=$SRC NUMBA_CACHE_DIR=$(mktemp -d)
PY=${PYTHON:-python}
S="import time, os, fastmlp; X, y, _, _ = fastmlp.load_mnist(); m = fastmlp.MLP([784, 128, 10]); h = m.fit(X, y, epochs=1, batch_size=$B, progress=False); from fastmlp import _prewarm; print(os.getpid(), round(m.compile_seconds_, 2), round(h.samples_per_second[-1]), [p.pid for p in _prewarm._STARTED])"
t0=$(date +%s.%N)
$PY -c "$S"
$PY -c "$S"
echo "second script ended $(echo "$(date +%s.%N) - $t0" | bc) s after the first started"
while pgrep -f fastmlp._prewarm >/dev/null; do sleep 0.1; done
echo "no second process left $(echo "$(date +%s.%N) - $t0" | bc) s after the first started"
$PY -c "$S"
rm -rf "$NUMBA_CACHE_DIR"
