"""Every bad input is refused before training, with a message naming the argument and value."""

import numpy as np
import pytest

from fastmlp import MLP

rng = np.random.default_rng(0)
X_OK = rng.integers(0, 256, size=(20, 784), dtype=np.uint8)
Y_OK = np.arange(20) % 10
X_REG = rng.normal(size=(20, 2))
Y_REG = rng.normal(size=20)


def with_row(array, row, value):
    array = array.astype(np.float64 if value is not None and isinstance(value, float) else array.dtype, copy=True)
    array[row] = value
    return array


class SparseStandIn:  # what scipy.sparse matrices have that makes them one (scipy is no test dependency)
    nnz = 3
    shape = (20, 784)

    def toarray(self):
        return X_OK


def bad_x(row, value):
    X = X_OK.astype(np.float32) / 255
    X[row, 3] = value
    return X


# (constructor kwargs, fit args, fit kwargs, exception type, words the message must contain)
CASES = {
    # data shapes and values
    "X 1-D": ({}, (X_OK[0], Y_OK[:1]), {}, ValueError, ["X", "shape"]),
    "X 4-D": ({}, (X_OK.reshape(20, 28, 28, 1), Y_OK), {}, ValueError, ["X", "shape"]),
    "X transposed": ({}, (X_OK.T, Y_OK), {}, ValueError, ["X", "20 features", "layers[0]"]),
    "X wrong features": ({}, (X_OK[:, :700], Y_OK), {}, ValueError, ["X", "700", "layers[0]"]),
    "X empty": ({}, (X_OK[:0], Y_OK[:0]), {}, ValueError, ["X", "empty"]),
    "X strings": ({}, (np.array([["a"] * 784] * 20), Y_OK), {}, TypeError, ["X", "dtype"]),
    "X int64 pixels": ({}, (X_OK.astype(np.int64), Y_OK), {}, TypeError, ["X", "int64", "uint8"]),
    "X bool": ({}, (X_OK > 0, Y_OK), {}, TypeError, ["X", "bool"]),
    "X complex": ({}, (X_OK.astype(np.complex64), Y_OK), {}, TypeError, ["X"]),
    "X None": ({}, (None, Y_OK), {}, TypeError, ["X", "None"]),
    "X NaN": ({}, (bad_x(7, np.nan), Y_OK), {}, ValueError, ["X", "NaN", "row 7"]),
    "X inf": ({}, (bad_x(11, np.inf), Y_OK), {}, ValueError, ["X", "infinity", "row 11"]),
    "X -inf": ({}, (bad_x(2, -np.inf), Y_OK), {}, ValueError, ["X", "row 2"]),
    "y shorter": ({}, (X_OK, Y_OK[:15]), {}, ValueError, ["X", "y", "20", "15"]),
    "y longer": ({}, (X_OK, np.arange(25) % 10), {}, ValueError, ["y", "25"]),
    "y scalar": ({}, (X_OK, 3), {}, ValueError, ["y", "scalar"]),
    "y None": ({}, (X_OK, None), {}, TypeError, ["y", "None"]),
    "y label 10": ({}, (X_OK, with_row(Y_OK, 13, 10)), {}, ValueError, ["labels", "[0, 9]", "10", "row 13"]),
    "y label -1": ({}, (X_OK, with_row(Y_OK, 4, -1)), {}, ValueError, ["labels", "-1", "row 4"]),
    "y fractional": ({}, (X_OK, with_row(Y_OK, 6, 2.5)), {}, ValueError, ["y", "integer", "2.5", "row 6"]),
    "y NaN label": ({}, (X_OK, with_row(Y_OK, 9, np.nan)), {}, ValueError, ["y", "integer", "row 9"]),
    "y one-hot": ({}, (X_OK, np.eye(10)[Y_OK]), {}, ValueError, ["y", "1-D", "argmax"]),
    "y strings": ({}, (X_OK, np.array(["cat"] * 20)), {}, TypeError, ["y", "dtype"]),
    # complex labels or targets: the imaginary part was dropped with only NumPy's ComplexWarning
    "y complex": ({}, (X_OK, Y_OK + 7j), {}, TypeError, ["y", "real", "complex"]),
    "regression y complex": (
        {"layers": [2, 3, 1], "loss": "mse"}, (X_REG, Y_REG + 1j), {}, TypeError, ["y", "real", "complex"]),
    # a finite float64 value that float32 cannot hold was reported as "NaN or infinity"
    "X beyond float32": ({}, (with_row(X_OK.astype(np.float64) / 255, 3, 1e40), Y_OK), {}, ValueError,
                         ["X", "beyond the range of float32", "row 3", "float64"]),
    "regression y wrong width": (
        {"layers": [2, 3, 1], "loss": "mse"}, (X_REG, rng.normal(size=(20, 3))), {}, ValueError, ["y", "[20, 1]"]),
    "regression y NaN": (
        {"layers": [2, 3, 1], "loss": "mse"}, (X_REG, with_row(Y_REG, 5, np.nan)), {}, ValueError, ["y", "NaN", "row 5"]),
    # a column of 0/1 labels: the one-hot hint (argmax) would have made every label 0
    "bce labels as a column": (
        {"layers": [2, 3, 1], "loss": "binary_cross_entropy"}, (X_REG, (np.arange(20) % 2)[:, None]), {}, ValueError,
        ["y", "1-D", "y.ravel()"]),
    "bce label 2": (
        {"layers": [2, 3, 1], "loss": "binary_cross_entropy"}, (X_REG, np.arange(20) % 3), {}, ValueError, ["labels", "[0, 1]", "row 2"]),
    # numpy's reshape error ("cannot reshape array of size 0 into shape (0,newaxis)") for no images
    "X images, none": ({}, (X_OK[:0].reshape(0, 28, 28), Y_OK[:0]), {}, ValueError, ["X", "empty"]),
    # "X must hold numbers; got an array of dtype object", of what the user never passed
    "X sparse": ({}, (SparseStandIn(), Y_OK), {}, TypeError, ["X", "scipy.sparse", "X.toarray()"]),
    "X generator": ({}, ((row for row in X_OK), Y_OK), {}, TypeError, ["X", "generator", "[n_samples, 784]"]),
    "X ragged rows": ({}, ([[0.5] * 784] * 19 + [[0.5] * 783], Y_OK), {}, ValueError, ["X", "[n_samples, 784]", "inhomogeneous"]),
    "X objects, one a word": ({}, (with_row(X_OK.astype(object), 4, "a"), Y_OK), {}, TypeError, ["X", "'a'", "row 4"]),
    "X objects, one a numeral": ({}, (with_row(X_OK.astype(object), 6, "1.5"), Y_OK), {}, TypeError,
                                 ["X", "'1.5'", "row 6"]),
    # a finite target float32 cannot hold was reported as "NaN or infinity"
    "regression y beyond float32": (
        {"layers": [2, 3, 1], "loss": "mse"}, (X_REG, with_row(Y_REG, 5, 1e40)), {}, ValueError,
        ["y", "beyond the range of float32", "row 5", "float64"]),
    # hyperparameters
    "lr zero": ({}, (X_OK, Y_OK), {"lr": 0}, ValueError, ["lr", "0"]),
    "lr negative": ({}, (X_OK, Y_OK), {"lr": -0.1}, ValueError, ["lr", "-0.1"]),
    "lr nan": ({}, (X_OK, Y_OK), {"lr": float("nan")}, ValueError, ["lr", "nan"]),
    "lr inf": ({}, (X_OK, Y_OK), {"lr": float("inf")}, ValueError, ["lr", "inf"]),
    "lr string": ({}, (X_OK, Y_OK), {"lr": "0.1"}, TypeError, ["lr", "'0.1'"]),
    "epochs zero": ({}, (X_OK, Y_OK), {"epochs": 0}, ValueError, ["epochs", "0"]),
    "epochs float": ({}, (X_OK, Y_OK), {"epochs": 1.5}, TypeError, ["epochs", "1.5"]),
    "batch_size zero": ({}, (X_OK, Y_OK), {"batch_size": 0}, ValueError, ["batch_size", "0"]),
    "batch_size negative": ({}, (X_OK, Y_OK), {"batch_size": -4}, ValueError, ["batch_size", "-4"]),
    "batch_size float": ({}, (X_OK, Y_OK), {"batch_size": 32.0}, TypeError, ["batch_size", "32.0"]),
    "schedule unknown": ({}, (X_OK, Y_OK), {"lr_schedule": "warmup"}, ValueError, ["lr_schedule", "warmup"]),
    "lr_decay zero": ({}, (X_OK, Y_OK), {"lr_decay": 0}, ValueError, ["lr_decay"]),
    "shuffle string": ({}, (X_OK, Y_OK), {"shuffle": "yes"}, TypeError, ["shuffle", "yes"]),
    "validation not a pair": ({}, (X_OK, Y_OK), {"validation_data": X_OK}, TypeError, ["validation_data"]),
    "validation wrong width": (
        {}, (X_OK, Y_OK), {"validation_data": (X_OK[:, :10], Y_OK)}, ValueError, ["validation_data[0]", "10"]),
    "validation bad label": (
        {}, (X_OK, Y_OK), {"validation_data": (X_OK, with_row(Y_OK, 3, 42))}, ValueError, ["validation_data[1]", "42", "row 3"]),
    # the network
    "activation unknown": ({"activation": "softplus"}, (X_OK, Y_OK), {}, ValueError, ["activation", "softplus"]),
    "loss unknown": ({"loss": "hinge"}, (X_OK, Y_OK), {}, ValueError, ["loss", "hinge"]),
    "output unknown": ({"output": "maxout"}, (X_OK, Y_OK), {}, ValueError, ["output", "maxout"]),
    "output loss mismatch": ({"output": "sigmoid", "loss": "cross_entropy"}, (X_OK, Y_OK), {}, ValueError, ["sigmoid", "cross_entropy"]),
    "init unknown": ({"init": "ones"}, (X_OK, Y_OK), {}, ValueError, ["init", "ones"]),
    "dtype unknown": ({"dtype": "float16"}, (X_OK, Y_OK), {}, ValueError, ["dtype", "float16"]),
    "backend unknown": ({"backend": "cuda"}, (X_OK, Y_OK), {}, ValueError, ["backend", "cuda"]),
    "threads zero": ({"threads": 0}, (X_OK, Y_OK), {}, ValueError, ["threads", "0"]),
    "seed negative": ({"seed": -1}, (X_OK, Y_OK), {}, ValueError, ["seed", "-1"]),
    "seed float": ({"seed": 0.5}, (X_OK, Y_OK), {}, TypeError, ["seed", "0.5"]),
    "layers one entry": ({"layers": [784]}, (X_OK, Y_OK), {}, ValueError, ["layers", "784"]),
    "layers zero width": ({"layers": [784, 0, 10]}, (X_OK, Y_OK), {}, ValueError, ["layers[1]", "0"]),
    "layers float": ({"layers": [784, 12.5, 10]}, (X_OK, Y_OK), {}, TypeError, ["layers[1]", "12.5"]),
    "layers string": ({"layers": "784,128,10"}, (X_OK, Y_OK), {}, TypeError, ["layers", "784,128,10"]),
    "last layer vs classes": ({"layers": [784, 16, 5]}, (X_OK, Y_OK), {}, ValueError, ["labels", "[0, 4]", "layers[-1] = 5", "row 5"]),
    "bce with 10 outputs, one label each": ({"loss": "binary_cross_entropy", "layers": [784, 16, 10]}, (X_OK, Y_OK), {}, ValueError, ["binary_cross_entropy", "indicator matrix", "loss='cross_entropy'", "10"]),
    "softmax one unit": ({"layers": [784, 16, 1]}, (X_OK, Y_OK), {}, ValueError, ["softmax", "2 units"]),
    "bias not bool": ({"bias": "no"}, (X_OK, Y_OK), {}, TypeError, ["bias", "'no'"]),
    # None was NumPy's float64 (trained, saved and shown as dtype=None), 5 NumPy's own error (audit 42)
    "dtype None": ({"dtype": None}, (X_OK, Y_OK), {}, ValueError, ["dtype must be 'float32' or 'float64'", "None"]),
    "dtype 5": ({"dtype": 5}, (X_OK, Y_OK), {}, ValueError, ["dtype must be", "got 5"]),
}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_with_a_message_that_names_it(case, backend):
    kwargs, args, fit_kwargs, error, words = CASES[case]
    model = MLP(**{"layers": [784, 16, 10], "backend": backend, **kwargs})
    with pytest.raises(error) as info:
        model.fit(*args, **{"progress": False, **fit_kwargs})
    message = str(info.value)
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    assert not hasattr(model, "params_") or np.isfinite(model.params_).all()


def test_there_are_at_least_forty_distinct_cases():
    assert len(CASES) >= 40


def test_predict_before_fit_says_so():
    with pytest.raises(RuntimeError, match="not trained yet"):
        MLP([784, 16, 10], backend="numpy").predict(X_OK)


@pytest.mark.parametrize("regression", [False, True])
def test_score_and_evaluate_without_labels_say_so_before_any_forward_pass(regression, monkeypatch):
    # y=None meant "no labels" inside the model: score(X, None) said "object of type 'NoneType' has
    # no len()" (regression: "unsupported operand type(s) for -") after the whole forward pass
    # (audit 60)
    X, y = (X_REG, Y_REG) if regression else (X_OK, Y_OK)
    model = MLP([2, 3, 1], loss="mse", backend="numpy") if regression else MLP([784, 4, 10], backend="numpy")
    model.fit(X, y, epochs=1, progress=False)
    monkeypatch.setattr(model.backend_, "logits", lambda *args: pytest.fail("a forward pass before the check of y"))
    for method in (model.score, model.evaluate):
        with pytest.raises(TypeError, match="^y must be an array of 20 targets; got None$"):
            method(X, None)


def test_weights_before_fit_say_so():
    model = MLP([784, 16, 10], backend="numpy")
    for name in ("weights_", "biases_"):
        with pytest.raises(AttributeError, match=f"{name}: this MLP is not trained yet"):  # was: no attribute 'arch_'
            getattr(model, name)
        assert not hasattr(model, name)


def test_nothing_is_trained_when_validation_data_is_bad():
    model = MLP([784, 16, 10], backend="numpy")
    model.fit(X_OK, Y_OK, progress=False)
    before = model.params_.copy()
    with pytest.raises(ValueError, match=r"validation_data\[1\] labels must be in \[0, 9\].*got 99 at row 0"):
        model.partial_fit(X_OK, Y_OK, validation_data=(X_OK, with_row(Y_OK, 0, 99)), progress=False)
    np.testing.assert_array_equal(model.params_, before)


def _kernel_signatures():
    """Every compiled kernel's signatures in this process, by name (Numba's dispatchers)."""
    from numba.core.registry import CPUDispatcher

    from fastmlp import kernels

    found = {}
    for module in vars(kernels).values():
        for name, value in vars(module).items() if hasattr(module, "__dict__") else ():
            if isinstance(value, CPUDispatcher):
                found[f"{value.py_func.__module__}.{name}"] = set(value.signatures)
    return found


@pytest.mark.parametrize("batch_size", [1, 8])
def test_read_only_targets_train_on_the_kernels_compiled_for_writeable_ones(batch_size):
    """A memory-mapped or otherwise read-only y is a different type to Numba: passed on as it
    is, it would compile every kernel it reaches again (tens of seconds cold) and cache a second
    copy. Regression targets, class labels and label sets all reach the kernels."""
    import numba

    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT=1: nothing is compiled")
    X = rng.normal(size=(24, 5)).astype(np.float32)
    fits = {
        "regression": (dict(layers=[5, 4, 2], loss="mse", activation="tanh"), rng.normal(size=(24, 2))),
        "labels": (dict(layers=[5, 4, 3]), np.arange(24) % 3),
        "label sets": (dict(layers=[5, 4, 3], loss="binary_cross_entropy"), (rng.random((24, 3)) < 0.5).astype(np.int64)),
    }
    for name, (kwargs, y) in fits.items():
        read_only = y.copy()
        read_only.flags.writeable = False
        trained = []
        for targets in (y, read_only):  # the first fit compiles (or loads) what the second needs
            before = _kernel_signatures()
            model = MLP(**kwargs, backend="numba", dtype="float32", seed=0, threads=1)
            model.fit(X, targets, epochs=1, batch_size=batch_size, lr=0.05, progress=False)
            trained.append(model.params_.copy())
        # (checked on the signatures the second fit added: a kernel the first one compiled is
        # loaded, not compiled again, but a second process may have cached the parallel kernel
        # in between, which that fit would then load: a new signature, and not a read-only one)
        added = {kernel: signatures - before.get(kernel, set()) for kernel, signatures in _kernel_signatures().items()}
        read_only_types = {kernel: new for kernel, new in added.items()
                           if any(isinstance(t, numba.types.Array) and not t.mutable for sig in new for t in sig)}
        assert not read_only_types, (name, read_only_types)
        assert np.array_equal(trained[0], trained[1]), name


def test_validation_data_after_a_run_with_a_validation_fraction_names_the_runs_fraction():
    # the message said "pass validation_data or validation_fraction, not both" to a call that
    # passed only validation_data (the fraction is the run's)
    X, y = X_OK.astype(np.float32) / 255, Y_OK
    model = MLP([784, 16, 10], backend="numpy")
    model.fit(X, y, validation_fraction=0.2, progress=False)
    with pytest.raises(ValueError, match=r"this run holds out validation_fraction=0.2 .* pass validation_fraction=None"):
        model.partial_fit(X, y, validation_data=(X, y), progress=False)
    model.partial_fit(X, y, validation_data=(X, y), validation_fraction=None, progress=False)
    assert len(model.history_.val_loss) == 2


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_numbers_held_as_objects_train_as_float64_numbers(backend):
    # a pandas frame of nullable columns (read_csv(dtype_backend="numpy_nullable"), convert_dtypes())
    # is an object array to NumPy: refused as "must hold numbers", though scikit-learn takes it
    X = X_OK.astype(np.float64) / 255
    plain, held = (MLP([784, 16, 10], backend=backend, seed=3) for _ in range(2))
    plain.fit(X, Y_OK, epochs=2, batch_size=4, progress=False)
    held.fit(X.astype(object), Y_OK.astype(object), epochs=2, batch_size=4, progress=False)
    np.testing.assert_array_equal(held.params_, plain.params_)
    np.testing.assert_array_equal(held.predict(X.astype(object)), plain.predict(X))


def test_integers_held_as_objects_are_integers():
    """A frame of nullable Int64 and UInt8 pixel columns is an object array of ints to NumPy: it
    was taken as float64 features, 0..255, and a model trained on the same pixels as uint8 (scaled
    by 1/255) gave other predictions, silently (audit 33). As X it is now refused as int64 X is
    (pixels or features?); as labels and weights, ints are what they are."""
    pd = pytest.importorskip("pandas")
    model = MLP([784, 16, 10], seed=3)
    model.fit(X_OK, Y_OK, epochs=1, progress=False)
    frame = pd.DataFrame({f"p{i}": pd.array(X_OK[:, i], dtype="UInt8" if i % 2 else "Int64") for i in range(784)})
    assert np.asarray(frame).dtype == object  # (mixed nullable columns)
    for held in (frame, X_OK.astype(object), X_OK.astype(np.int64).astype(object)):
        for call in (model.predict, model.predict_proba, lambda X: model.score(X, Y_OK),
                     lambda X: MLP([784, 16, 10]).fit(X, Y_OK, progress=False),
                     lambda X: MLP([784, 16, 10]).fit(X_OK, Y_OK, validation_data=(X, Y_OK), progress=False)):
            with pytest.raises(TypeError, match=r"uint8 pixels \(scaled by 1/255\) or floats; got dtype int64\. "
                                                r"Use (X|validation_data\[0\])\.astype\(np\.uint8\) for 0\.\.255 pixels"):
                call(held)
    bools = np.zeros((2, 784), bool).astype(object)
    with pytest.raises(TypeError, match="got dtype bool"):  # (as a bool array is)
        model.predict(bools)
    # labels and weights held as objects: the same numbers
    weights = np.arange(1, 21)
    plain, held = (MLP([784, 16, 10], seed=3) for _ in range(2))
    plain.fit(X_OK, Y_OK, epochs=1, sample_weight=weights, progress=False)
    held.fit(X_OK, Y_OK.astype(object), epochs=1, sample_weight=weights.astype(object), progress=False)
    np.testing.assert_array_equal(held.params_, plain.params_)


@pytest.mark.parametrize("values, words", [
    (np.full((20, 784), np.timedelta64(1, "s")), "X must hold numbers; got an array of dtype timedelta64[s]"),
    (with_row(np.full((20, 784), 1, object), 2, 10**400), "X holds an integer too large for a float64 (about 401 digits) at row 2"),
])
def test_what_is_no_number_is_named_so(values, words):
    # a timedelta was told to use astype(np.uint8) for pixels (NumPy counts it among the
    # integers); an int of 401 digits was called "not a number" and printed whole (audit 33)
    with pytest.raises(TypeError) as error:
        MLP([784, 16, 10]).fit(values, Y_OK, progress=False)
    assert str(error.value) == words


def test_masked_entries_are_refused_not_trained_as_numbers():
    # np.asarray drops a masked array's mask: a masked sentinel (-9999) trained as a pixel, and a
    # masked label as a label (audit 33)
    X = np.ma.masked_equal(with_row(X_OK.astype(np.float64) / 255, 3, -9999.0), -9999.0)
    y = np.ma.masked_array(Y_OK, mask=np.arange(20) == 5)
    with pytest.raises(ValueError, match=r"^X is a masked array with masked entries, first at row 3; fill them"):
        MLP([784, 16, 10]).fit(X, Y_OK, progress=False)
    with pytest.raises(ValueError, match=r"^y is a masked array with masked entries, first at row 5"):
        MLP([784, 16, 10]).fit(X_OK, y, progress=False)
    with pytest.raises(ValueError, match=r"^sample_weight is a masked array with masked entries, first at row 0"):
        MLP([784, 16, 10]).fit(X_OK, Y_OK, sample_weight=np.ma.masked_array(np.ones(20), mask=np.arange(20) == 0),
                               progress=False)
    model = MLP([784, 16, 10], seed=0)
    model.fit(np.ma.masked_array(X_OK), np.ma.masked_array(Y_OK), epochs=1, progress=False)  # nothing masked: fine
    with pytest.raises(ValueError, match="masked entries, first at row 3"):
        model.predict(X)


def test_a_value_beyond_float64_is_not_told_to_train_in_float64():
    big = with_row(np.full((20, 784), 0.5, np.longdouble), 3, np.longdouble(10) ** 400)
    with pytest.raises(ValueError, match=r"beyond the range of float64 .* first at row 3: scale the data$"):
        MLP([784, 16, 10], dtype="float64").fit(big, Y_OK, progress=False)


def test_a_scipy_sparse_matrix_is_refused_naming_toarray():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match=r"X is a scipy.sparse csr_matrix; .* X.toarray\(\)"):
        MLP([784, 16, 10]).fit(sparse.csr_matrix(X_OK), Y_OK, progress=False)
