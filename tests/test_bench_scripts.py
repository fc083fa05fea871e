"""The benchmark scripts' own machinery (their measurements are not tests: timings are noisy)."""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_startup_base_revision_imports_its_own_kernels(tmp_path, monkeypatch):
    """``bench/startup.py --base REV`` runs REV's fastmlp *and* REV's kernels: with REV's
    fastmlp/ alone first on PYTHONPATH, an editable install still served fastmlp.kernels from
    the working tree, and such an A/B compared old Python with new kernels."""
    monkeypatch.chdir(ROOT)
    source = load_script("startup").extract("HEAD", str(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = source
    code = "import fastmlp, fastmlp.kernels.minibatch as m; print(fastmlp.__file__); print(m.__file__)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=tmp_path, check=True)
    for path in done.stdout.split():
        assert pathlib.Path(path).resolve().is_relative_to(tmp_path.resolve()), done.stdout


def test_compile_events_self_time_leaves_out_the_functions_compiled_inside():
    """A caller's compile includes its callees' (Numba compiles them while typing it): its self
    time is its own part only, and the callee's callee is not subtracted twice."""
    events = [(0.0, 10.0, "kernel"), (1.0, 4.0, "helper"), (2.0, 3.0, "leaf"), (5.0, 6.0, "other")]
    rows = {name: (own, total) for own, total, name in load_script("compile_events").self_times(events)}
    assert rows == {"kernel": (6.0, 10.0), "helper": (2.0, 3.0), "leaf": (1.0, 1.0), "other": (1.0, 1.0)}
