"""Where a prediction's time goes:
python bench/experiments/predict_rows.py [ROUNDS] [HIDDEN] [ACTIVATION]

A 784-HIDDEN-10 model (HIDDEN: the hidden layers' widths, "128" or "500,150"; sigmoid unless
ACTIVATION says; trained one epoch on 10,000 MNIST rows at batch 32) predicts MNIST's 10,000
test rows: the fastest of ROUNDS calls of MLP.predict, of the backend's CSR conversion
(``prepare``) and of its forward pass (``logits``) of those CSR rows and (session 61 on, which
predicts without converting) of the rows as they are (``for_inference``), on the model's threads
("auto") and one.
Reads MNIST through fastmlp's loader (FASTMLP_DATA)."""

import sys
import time

import fastmlp


def fastest(call, rounds):
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    hidden = [int(width) for width in (sys.argv[2] if len(sys.argv) > 2 else "128").split(",")]
    activation = sys.argv[3] if len(sys.argv) > 3 else "sigmoid"
    X, y, X_test, _ = fastmlp.load_mnist()
    for threads in ("auto", 1):
        model = fastmlp.MLP([784, *hidden, 10], activation=activation, seed=0, threads=threads)
        model.fit(X[:10000], y[:10000], epochs=1, batch_size=32, progress=False)
        model.predict(X_test)  # compiled
        backend = model.backend_
        data = backend.prepare(X_test, batches=False)
        rows = backend.for_inference(X_test) if hasattr(backend, "for_inference") else None
        print(f"784-{'-'.join(map(str, hidden))}-10 {activation}, threads={threads}: predict {fastest(lambda: model.predict(X_test), rounds):.2f} ms, "
              f"prepare {fastest(lambda: backend.prepare(X_test, batches=False), rounds):.2f} ms, "
              f"logits {fastest(lambda: backend.logits(model.params_, data), rounds):.2f} ms"
              + ("" if rows is None else
                 f", logits of the rows as they are {fastest(lambda: backend.logits(model.params_, rows), rounds):.2f} ms")
              + f" (fastest of {rounds})")


if __name__ == "__main__":
    main()
