"""fastmlp.MLPClassifier / MLPRegressor docstrings: every constructor parameter and every fitted
attribute has a numpydoc entry (``name : type, default=...``) in the class docstring, the stated
defaults are the signature's, and the public methods describe their parameters and returns."""

import ast
import inspect
import re
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed: pip install 'fastmlp[sklearn]'")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402

ESTIMATORS = [MLPClassifier, MLPRegressor]
METHODS = {
    MLPClassifier: ["fit", "partial_fit", "predict", "predict_proba", "predict_log_proba"],
    MLPRegressor: ["fit", "partial_fit", "predict"],
}
ENTRY = re.compile(r"^(\w+) : (.+)$")  # an entry's first line, at the section's indentation


def sections(doc):
    """{section title: [(name, type/default text), ...]} of a numpydoc docstring (a title is a
    line followed by a line of dashes; entries are the unindented ``name : ...`` lines)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    found, current = {}, None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.strip() and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            current = found.setdefault(line.strip(), [])
        elif current is not None:
            match = ENTRY.match(line)
            if match:
                current.append(match.groups())
    return found


def entries(doc, section):
    items = sections(doc).get(section, [])
    names = [name for name, _ in items]
    assert len(names) == len(set(names)), f"{section} lists an entry twice: {names}"
    return dict(items)


def constructor_parameters(cls):
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}


def fitted(cls, **params):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int) if cls is MLPClassifier else X[:, 0] + 0.1 * X[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(hidden_layer_sizes=(3,), max_iter=2, random_state=0, **params).fit(X, y)


def fitted_attributes(estimator):
    """The public learned attributes: those a fit set on the instance, and the class's properties."""
    names = {name for name in vars(estimator) if name.endswith("_") and not name.startswith("_")}
    properties = {name for name, value in inspect.getmembers(type(estimator), lambda v: isinstance(v, property))
                  if name.endswith("_") and not name.startswith("_")}
    return names | {name for name in properties if hasattr(estimator, name)}


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_constructor_parameter_has_an_entry(cls):
    documented = entries(cls.__doc__, "Parameters")
    signature = constructor_parameters(cls)
    assert set(signature) == set(cls().get_params())
    assert sorted(set(signature) - set(documented)) == [], "parameters without an entry in Parameters"
    assert sorted(set(documented) - set(signature)) == [], "entries in Parameters that are no parameter"
    assert list(documented) == list(signature), "Parameters should follow the signature's order"


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_the_stated_defaults_are_the_signatures(cls):
    signature = constructor_parameters(cls)
    for name, text in entries(cls.__doc__, "Parameters").items():
        match = re.search(r", default=(.+)$", text)
        assert match, f"{name}'s entry states no default: {text!r}"
        stated = match.group(1).strip()
        stated = np.inf if stated == "np.inf" else ast.literal_eval(stated)
        assert stated == signature[name] and type(stated) is type(signature[name]), (
            f"{name}: the docstring says default={match.group(1)}, the signature {signature[name]!r}")


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("params", [{}, {"early_stopping": True}], ids=["plain", "early_stopping"])
def test_every_fitted_attribute_has_an_entry(cls, params):
    estimator = fitted(cls, **params)
    attributes = fitted_attributes(estimator)
    assert {"coefs_", "intercepts_", "loss_curve_", "model_", "n_iter_", "t_"} <= attributes  # the fit worked
    missing = sorted(attributes - set(entries(cls.__doc__, "Attributes")))
    assert missing == [], f"fitted attributes without an entry in Attributes: {missing}"


def test_feature_names_in_has_an_entry():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(30, 2)), columns=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cls, y in ((MLPClassifier, np.arange(30) % 2), (MLPRegressor, np.arange(30.0))):
            estimator = cls(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y)
            assert "feature_names_in_" in fitted_attributes(estimator)
            assert "feature_names_in_" in entries(cls.__doc__, "Attributes")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_attribute_entry_is_an_attribute_a_fit_sets(cls):
    """No stale entry: each one documented is set by a fit (feature_names_in_ by one on a DataFrame)."""
    attributes = fitted_attributes(fitted(cls)) | {"feature_names_in_"}
    stale = sorted(set(entries(cls.__doc__, "Attributes")) - attributes)
    assert stale == [], f"entries in Attributes that no fit sets: {stale}"
    unfitted = cls()
    assert not fitted_attributes(unfitted), "an unfitted estimator should have no learned attributes"


@pytest.mark.parametrize("cls, method", [(cls, name) for cls in ESTIMATORS for name in METHODS[cls]])
def test_methods_describe_their_parameters_and_returns(cls, method):
    function = getattr(cls, method)
    doc = inspect.getdoc(function)
    expected = [name for name in inspect.signature(function).parameters if name != "self"]
    assert list(entries(doc, "Parameters")) == expected, f"{cls.__name__}.{method}: Parameters"
    for name, default in ((n, p.default) for n, p in inspect.signature(function).parameters.items()):
        if default is not inspect.Parameter.empty:
            assert entries(doc, "Parameters")[name].endswith(f"default={default!r}"), f"{method}({name}=...)"
    assert entries(doc, "Returns"), f"{cls.__name__}.{method} has no Returns entry"


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_the_class_docstring_needs_no_readme(cls):
    """The README is not installed with the package: help() must stand on its own."""
    assert "README" not in cls.__doc__
    for section in ("Parameters", "Attributes", "See Also"):
        assert section in sections(cls.__doc__)


def entry_texts(doc, section):
    """{name: the entry's whole text (its first line and its description)} of one section."""
    lines = inspect.cleandoc(doc or "").splitlines()
    texts, current, inside = {}, None, False
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            inside, current = line.strip() == section, None
            continue
        if not inside or re.fullmatch(r"-{3,}", line.strip()):
            continue
        match = ENTRY.match(line)
        if match:
            current = match.group(1)
            texts[current] = [line]
        elif current is not None and line.strip():
            texts[current].append(line)
    return {name: "\n".join(text) for name, text in texts.items()}


# The entries that say something of the kind of target (class labels or real values).
DIFFER_BY_DESIGN = {"activation", "early_stopping", "loss_", "validation_scores_", "n_outputs_", "out_activation_"}


@pytest.mark.parametrize("section", ["Parameters", "Attributes"])
def test_the_two_estimators_say_the_same_of_what_they_share(section):
    """The two class docstrings repeat most entries word for word (as scikit-learn's do, so that
    each reads whole in help()): an entry mended in one and not the other would drift."""
    ours, theirs = (entry_texts(cls.__doc__, section) for cls in ESTIMATORS)
    shared = (set(ours) & set(theirs)) - DIFFER_BY_DESIGN
    assert len(shared) >= {"Parameters": 20, "Attributes": 10}[section]
    assert {name for name in shared if ours[name] != theirs[name]} == set()
    assert DIFFER_BY_DESIGN & set(ours) & set(theirs)  # (the exceptions still exist)
