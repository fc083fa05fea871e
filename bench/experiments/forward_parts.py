"""The forward pass's pieces on 4,096 MNIST test rows, one thread (session 61):

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/forward_parts.py

784-128-10 sigmoid (trained on 2,000 rows): the first layer's CSR rows (kernels.sparse_linear_forward,
with and without the activation) and the 128x10 dense layer (kernels.linear_forward), fastest of 30.
"""

import time

import numpy as np

import fastmlp
from fastmlp import kernels

X, y, X_test, _ = fastmlp.load_mnist()
model = fastmlp.MLP([784, 128, 10], seed=0, threads=1)
model.fit(X[:2000], y[:2000], epochs=1, batch_size=32, progress=False)
data = model.backend_.prepare(X_test, batches=False)
arch = model.arch_
(W, b), (W2, b2) = arch.layout().views(model.params_)
rows = np.arange(4096, dtype=np.int64)
hidden = np.empty((4096, 128), np.float32)
out = np.empty((4096, 10), np.float32)


def fastest(call, rounds=30):
    best = float("inf")
    for _ in range(rounds):
        tic = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - tic)
    return best * 1e3


sparse = (rows, data.indptr, data.indices, data.values, data.input_scale, W, b)
print(f"first layer, sigmoid: {fastest(lambda: kernels.sparse_linear_forward(hidden, *sparse, arch.activation_code)):.2f} ms")
print(f"first layer, no activation: {fastest(lambda: kernels.sparse_linear_forward(hidden, *sparse, 0)):.2f} ms")
print(f"128x10 dense layer: {fastest(lambda: kernels.linear_forward(out, hidden, W2, b2, 0)):.2f} ms")
