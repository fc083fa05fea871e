"""The optional extras, missing or installed but broken: what fastmlp says, and what the suite does.

An extra built for NumPy 1 (scikit-learn 1.3.0, pandas 1.5.0, matplotlib 3.6.0) is installed
beside NumPy 2 and fails to import: "not installed" is then the wrong advice, and a test suite
that skips on it passes without the tests (audit 56). The broken packages here are made in a
temporary folder put first on sys.path.
"""

import sys

import pytest

from fastmlp import _extras


def _package(root, name, body):
    folder = root / name
    folder.mkdir()
    (folder / "__init__.py").write_text(body)


@pytest.fixture
def broken(tmp_path, monkeypatch):
    """Installs ``name`` as a package whose import fails with ``body`` (a raise, or an import of
    something missing), shadowing any real one."""

    def install(name, body='raise ImportError("numpy.core.multiarray failed to import")'):
        _package(tmp_path, name, body)
        for loaded in [module for module in sys.modules if module == name or module.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.syspath_prepend(str(tmp_path))

    return install


def test_not_installed_tells_a_missing_module_from_a_broken_one():
    missing = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert _extras.not_installed(missing, "torch")
    assert _extras.not_installed(ModuleNotFoundError("", name="jax"), "jax.numpy")  # the package above it
    assert not _extras.not_installed(ModuleNotFoundError("", name="kiwisolver"), "matplotlib")  # its dependency
    assert not _extras.not_installed(ModuleNotFoundError("", name="jax.numpy"), "jax")
    blocked = ModuleNotFoundError("No module named 'sklearn.base'; 'sklearn' is not a package", name="sklearn.base")
    assert not _extras.not_installed(blocked, "sklearn")
    sys.modules["a_package_nobody_installed"] = None  # (blocked: a module of it then fails with its own name)
    try:
        assert _extras.not_installed(ModuleNotFoundError("", name="a_package_nobody_installed.base"),
                                     "a_package_nobody_installed")
    finally:
        del sys.modules["a_package_nobody_installed"]
    assert not _extras.not_installed(ImportError("cannot import name 'ComplexWarning'"), "sklearn")
    assert _extras.which_is(missing, "torch", "peers") == 'which is not installed: pip install "fastmlp[peers]"'
    said = _extras.which_is(ImportError("numpy.core.multiarray failed to import"), "matplotlib", "plot")
    assert said == ('which is installed but does not import (ImportError: numpy.core.multiarray failed to import): '
                    'reinstall it, or pip install --upgrade "fastmlp[plot]"')


def test_plotting_says_whether_matplotlib_is_missing_or_does_not_import(broken, monkeypatch):
    from fastmlp import plot

    broken("matplotlib")
    with pytest.raises(ImportError, match=r"^plotting needs matplotlib, which is installed but does not import "
                                          r"\(ImportError: numpy.core.multiarray failed to import\)"):
        plot.require_matplotlib()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'^plotting needs matplotlib, which is not installed: pip install "fastmlp'):
        plot.require_matplotlib()


def test_the_dask_executor_and_the_peers_say_it_too(broken):
    from fastmlp import sweeps
    from fastmlp.bench import peers

    broken("distributed", "import a_dependency_nobody_installed")
    with pytest.raises(ImportError, match=r"needs dask.distributed, which is installed but does not import "
                                          r"\(ModuleNotFoundError: No module named 'a_dependency_nobody_installed'\)"):
        sweeps._require_distributed()
    broken("torch")
    assert peers._import("torch").startswith("installed but does not import (numpy.core.multiarray failed")


def test_the_estimators_say_whether_scikit_learn_is_missing_or_does_not_import(broken, monkeypatch):
    import fastmlp

    monkeypatch.delitem(sys.modules, "fastmlp.estimators", raising=False)  # imported again on first use
    monkeypatch.delattr(fastmlp, "estimators", raising=False)
    broken("sklearn", "from . import _a_compiled_extension_that_is_missing")
    with pytest.raises(ImportError, match=r"^fastmlp.MLPClassifier needs scikit-learn, which is installed but does not "
                                          r"import \(ImportError: cannot import name '_a_compiled_extension"):
        fastmlp.MLPClassifier

    class NotInstalled:  # as Python's import system says it of a package it does not find
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.split(".")[0] == "sklearn":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    for loaded in [module for module in sys.modules if module.split(".")[0] == "sklearn"]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setattr(sys, "meta_path", [NotInstalled(), *sys.meta_path])
    with pytest.raises(ImportError, match=r"^fastmlp.MLPRegressor needs scikit-learn, which is not installed: pip"):
        fastmlp.MLPRegressor


def test_the_suite_skips_a_missing_extra_and_fails_on_a_broken_one(broken):
    # conftest's pytest.importorskip
    with pytest.raises(pytest.skip.Exception):
        pytest.importorskip("a_module_nobody_installed")
    with pytest.raises(pytest.skip.Exception):
        pytest.importorskip("a_module_nobody_installed.sub")
    broken("an_extra_built_for_numpy_1")
    broken("an_extra_missing_a_dependency", "import a_dependency_nobody_installed")
    for name, error in [("an_extra_built_for_numpy_1", "numpy.core.multiarray failed to import"),
                        ("an_extra_missing_a_dependency", "No module named 'a_dependency_nobody_installed'")]:
        try:
            pytest.importorskip(name)
        except ImportError as raised:
            assert str(raised) == error
        except pytest.skip.Exception:
            pytest.fail(f"an installed {name} that does not import was skipped as not installed")
        else:
            pytest.fail(f"{name} imported")
    assert pytest.importorskip("json").dumps(1) == "1"
    # an extra that warns on import is imported, as pytest's own importorskip does (under the
    # suite's error::UserWarning it failed the tests that need it: audit 57)
    broken("a_noisy_extra", "import warnings\nwarnings.warn('this option is deprecated', UserWarning)\nVALUE = 1\n")
    assert pytest.importorskip("a_noisy_extra").VALUE == 1
