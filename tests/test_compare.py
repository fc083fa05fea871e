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
    # and says what else than a fault parts the runs: Adam at the default rate 0.1 'differed'
    assert "compare again at a smaller --lr than 0.1" in out


def test_compare_backends_sees_a_real_difference(rng, synth):
    X, y = synth.digits(rng, 200)

    def make(backend):  # a different seed for numba: the comparison must notice
        return MLP([784, 8, 10], seed=0 if backend == "numpy" else 1, backend=backend, dtype="float64")

    result = compare_backends(make, X, y, X, y, epochs=1, fit_kwargs={"batch_size": 4, "lr": 0.1},
                              tolerance=TOLERANCES["float64"])
    assert result["agree"] is False
    assert result["epochs"][0]["max_abs_weight_diff"] > 1e-3
    assert np.isfinite(result["epochs"][0]["max_abs_weight"])


def test_compare_takes_the_schedule_and_optimizer_options(capsys, rng, synth, monkeypatch):
    X, y = synth.digits(rng, 300)
    import fastmlp.cli as cli

    monkeypatch.setattr(cli, "_data", lambda args: (X[:200], y[:200], X[200:], y[200:]))
    status = main(["compare", "--layers", "784,16,10", "--epochs", "3", "--batch-size", "8", "--lr-schedule", "cosine",
                   "--warmup-epochs", "1", "--optimizer", "sgd", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert status == 0 and result["agree"] is True
    assert result["fit_options"]["lr_schedule"] == "cosine" and result["fit_options"]["warmup_epochs"] == 1


def test_compare_says_in_one_line_when_numba_cannot_train_the_options(capsys, rng, synth, monkeypatch):
    """Until the kernels have an optimizer, the numba backend refuses it: compare reports that."""
    X, y = synth.digits(rng, 100)
    import fastmlp.cli as cli
    from fastmlp._numba_backend import NumbaBackend

    def not_yet(self, *args):
        raise NotImplementedError("the numba backend does not compile sgd with momentum yet; use backend='numpy'")

    monkeypatch.setattr(cli, "_data", lambda args: (X[:80], y[:80], X[80:], y[80:]))
    monkeypatch.setattr(NumbaBackend, "train_chunk", not_yet)
    status = main(["compare", "--layers", "784,16,10", "--momentum", "0.9"])
    out, err = capsys.readouterr()
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cannot compare: the numba backend does not train these options yet" in err and "momentum" in err


def test_compare_backends_passes_the_options_to_both_models(rng, synth):
    X, y = synth.digits(rng, 100)
    models = {}

    def make(backend):
        models[backend] = MLP([784, 8, 10], seed=0, backend="numpy", dtype="float64")
        return models[backend]

    result = compare_backends(make, X, y, X, y, epochs=2, tolerance=TOLERANCES["float64"],
                              fit_kwargs={"batch_size": 4, "lr": 0.1, "momentum": 0.9, "lr_schedule": "cosine"})
    assert result["agree"] is True  # numpy against numpy: identical
    for model in models.values():
        assert model.fit_options_["momentum"] == 0.9 and model.history_.lr == [0.1, 0.05]
        assert model.optimizer_state_.slots.shape[0] == 1


def test_compare_ends_where_the_runs_stop_as_fit_ends_them(rng, synth):
    # the adaptive rate's floor stops a run: compare went on to train epochs fit never trains
    X, y = synth.digits(rng, 200)

    def make(backend):
        return MLP([784, 8, 10], seed=0, backend=backend, dtype="float64")

    options = {"batch_size": None, "lr_schedule": "adaptive", "n_iter_no_change": 1, "tol": 10.0}
    result = compare_backends(make, X, y, X, y, epochs=30, fit_kwargs=options, tolerance=TOLERANCES["float64"])
    fitted = make("numpy")
    fitted.fit(X, y, epochs=30, progress=False, **options)
    assert fitted.run_.stopped and fitted.epochs_trained_ < 30
    assert len(result["epochs"]) == fitted.epochs_trained_ and result["agree"] is True
    assert result["epochs"][-1]["stopped"] == {"numba": fitted.run_.stopped, "numpy": fitted.run_.stopped}
    assert all("stopped" not in record for record in result["epochs"][:-1])
