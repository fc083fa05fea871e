"""fastmlp compare: both backends from one seed, side by side, with a verdict."""

import json

import numpy as np

from fastmlp import MLP
from fastmlp.cli import main
from fastmlp.compare import TOLERANCES, compare_backends


def test_compare_json_reports_each_epoch_and_agrees(capsys, tmp_path, rng, synth, monkeypatch):
    X, y = synth.digits(rng, 500)
    import fastmlp.cli as cli

    monkeypatch.setattr(cli, "_data", lambda args: (X[:400], y[:400], X[400:], y[400:]))
    status = main(["compare", "--layers", "784,16,10", "--epochs", "2", "--batch-size", "8", "--json"])
    out = capsys.readouterr().out
    result = json.loads(out)
    assert status == 0 and result["agree"] is True
    assert [r["epoch"] for r in result["epochs"]] == [1, 2]
    for record in result["epochs"]:
        assert set(record["numba"]) >= {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}
        assert 0 <= record["max_abs_weight_diff"] <= TOLERANCES["float32"]["weights_rtol"] * record["max_abs_weight"]
        assert abs(record["numba"]["train_loss"] - record["numpy"]["train_loss"]) < 1e-4


def test_compare_exits_non_zero_when_backends_differ(capsys, rng, synth, monkeypatch):
    X, y = synth.digits(rng, 300)
    import fastmlp.cli as cli

    monkeypatch.setattr(cli, "_data", lambda args: (X[:200], y[:200], X[200:], y[200:]))
    # a tolerance no float32 run can meet: the verdict must flip and the status follow it
    status = main(["compare", "--layers", "784,16,10", "--weights-rtol", "1e-30"])
    out = capsys.readouterr().out
    assert status == 1
    assert "BACKENDS DIFFER" in out and "max|dW|" in out


def test_compare_backends_sees_a_real_difference(rng, synth):
    X, y = synth.digits(rng, 200)

    def make(backend):  # a different seed for numba: the comparison must notice
        return MLP([784, 8, 10], seed=0 if backend == "numpy" else 1, backend=backend, dtype="float64")

    result = compare_backends(make, X, y, X, y, epochs=1, fit_kwargs={"batch_size": 4, "lr": 0.1},
                              tolerance=TOLERANCES["float64"])
    assert result["agree"] is False
    assert result["epochs"][0]["max_abs_weight_diff"] > 1e-3
    assert np.isfinite(result["epochs"][0]["max_abs_weight"])
