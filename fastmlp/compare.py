"""Train the compiled core and the NumPy reference side by side and measure how far apart they are.

Both models are built from the same hyperparameters and seed, so they start from the same
weights and visit the samples in the same order: any difference is floating-point rounding
(a different summation order, fused multiply-adds, a vectorised exp), compounded over steps.
"""

from __future__ import annotations

import numpy as np

# Agreement bounds after whole epochs, per dtype. Rounding differences of one ulp per step
# (6e-8 in float32, 1e-16 in float64) compound over tens of thousands of SGD steps through a
# nonlinear map. Measured on MNIST 784-128-10 sigmoid, one epoch, seed 0 (BENCHMARKS.md):
# float32 per-sample max|dW| = 1.7e-3 of max|W| (train losses equal to 5e-6, test accuracy
# 0.9615 vs 0.9617); float64 per-sample 1.3e-12 of max|W|; float64 batch 32, 2 epochs, 2e-15.
# The bounds sit several times above those measurements.
TOLERANCES = {
    "float32": {"weights_rtol": 1e-2, "loss_rtol": 1e-3, "accuracy_atol": 2e-3},
    "float64": {"weights_rtol": 1e-8, "loss_rtol": 1e-8, "accuracy_atol": 1e-4},
}


def compare_backends(make_model, X, y, X_test, y_test, *, epochs, fit_kwargs, tolerance):
    """Train ``make_model("numba")`` and ``make_model("numpy")`` epoch by epoch, one run of
    ``epochs`` epochs each (``fit_kwargs``: MLP.fit's training options, optimizer and schedule
    included).

    Returns a dict: ``epochs`` (one record per epoch with both backends' train loss and
    accuracy, test loss and accuracy, and ``max_abs_weight_diff`` / ``max_abs_weight``; the
    last one with ``stopped``, each backend's reason or None, where a run stopped before
    ``epochs``: early stopping, the adaptive rate's floor), ``tolerance`` and ``agree`` (every
    epoch within the tolerance, and the runs stopped together).
    """
    models = {name: make_model(name) for name in ("numba", "numpy")}
    records = []
    agree = True
    for name, model in models.items():
        model.initialize()
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch}
        for name, model in models.items():
            history = model.partial_fit(X, y, epochs=1, schedule_epochs=epochs, progress=False, **fit_kwargs)
            test = model.evaluate(X_test, y_test)
            record[name] = {
                "train_loss": history.loss[-1],
                "train_accuracy": history.accuracy[-1],
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "seconds": history.seconds[-1],
            }
        compiled, numpy_ = models["numba"].params_, models["numpy"].params_
        record["max_abs_weight_diff"] = float(np.max(np.abs(compiled.astype(np.float64) - numpy_)))
        record["max_abs_weight"] = float(np.max(np.abs(numpy_)))
        record["within_tolerance"] = within(record, tolerance)
        # a run that stopped (early stopping, the adaptive rate's floor) ends here, as ``fit`` ends
        # it; the two must stop together
        stopped = [model.run_.stopped for model in models.values()]
        if stopped[0] != stopped[1]:
            record["within_tolerance"] = False
        agree &= record["within_tolerance"]
        records.append(record)
        if stopped[0] is not None or stopped[1] is not None:
            record["stopped"] = dict(zip(models, stopped))
            break
    return {"epochs": records, "tolerance": tolerance, "agree": bool(agree)}


def within(record, tolerance):
    a, b = record["numba"], record["numpy"]
    weights_ok = record["max_abs_weight_diff"] <= tolerance["weights_rtol"] * record["max_abs_weight"]
    loss_ok = abs(a["train_loss"] - b["train_loss"]) <= tolerance["loss_rtol"] * abs(b["train_loss"])
    accuracy_ok = True
    if a["test_accuracy"] is not None:
        accuracy_ok = abs(a["test_accuracy"] - b["test_accuracy"]) <= tolerance["accuracy_atol"]
    return bool(weights_ok and loss_ok and accuracy_ok)
