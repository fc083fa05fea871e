"""Predictions' bits, to compare two versions of fastmlp (session 61):

    python bench/experiments/prediction_bits.py OUT.npz     (once per version: PYTHONPATH=...)
    python -c "import numpy as np; a, b = np.load('A.npz'), np.load('B.npz'); print(all(np.array_equal(a[k], b[k]) for k in a.files))"

Three networks (30-133-70-5 tanh, 30-128-10 sigmoid, 30-500-150-10 relu) in float32 and float64,
trained one epoch at batch 16 on 300 synthetic uint8 rows, predict 3,001 rows as uint8 and as
float32 inputs; the logits go to OUT.npz.
"""
import sys, numpy as np, fastmlp
rng = np.random.default_rng(4)
X = rng.integers(0, 256, size=(3001, 30)).astype(np.uint8); X[rng.random(X.shape) < 0.7] = 0
y = rng.integers(0, 5, size=len(X))
out = {}
for layers, act in (([30, 133, 70, 5], "tanh"), ([30, 128, 10], "sigmoid"), ([30, 500, 150, 10], "relu")):
    for dtype in ("float32", "float64"):
        m = fastmlp.MLP(layers, activation=act, seed=2, threads=1, dtype=dtype)
        m.fit(X[:300], y[:300], epochs=1, batch_size=16, progress=False)
        out[f"{layers}-{dtype}"] = m.decision_function(X)
        out[f"{layers}-{dtype}-f"] = m.decision_function(X.astype(np.float32) / 7)
np.savez(sys.argv[1], **out)
