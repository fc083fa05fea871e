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


def test_startup_says_issue_11s_targets_and_whether_they_were_met(monkeypatch):
    """It printed timings only, and its children inherited FASTMLP_BACKGROUND_COMPILE=0 from the
    shell, measuring a cold start without its second process unsaid (audit 45)."""
    startup = load_script("startup")
    result = {"cold": {"first_sample_seconds": 6.0}, "warm_first_sample_seconds_median": 0.4,
              "stored_warm_first_sample_seconds_median": 0.9}
    assert startup.verdict(result, 1) == ({"cold_first_sample_seconds": 5.0, "warm_first_sample_seconds": 1.0},
                                          {"cold": False, "warm": True})
    assert startup.verdict({**result, "stored_warm_first_sample_seconds_median": 1.2}, 32)[1] == {"cold": True,
                                                                                                  "warm": False}
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    assert "FASTMLP_BACKGROUND_COMPILE" not in startup.child_env("/cache")
    monkeypatch.setattr(startup, "BACKGROUND_COMPILE_OFF", True)
    assert startup.child_env("/cache")["FASTMLP_BACKGROUND_COMPILE"] == "0"


def test_compile_events_self_time_leaves_out_the_functions_compiled_inside():
    """A caller's compile includes its callees' (Numba compiles them while typing it): its self
    time is its own part only, and the callee's callee is not subtracted twice."""
    events = [(0.0, 10.0, "kernel"), (1.0, 4.0, "helper"), (2.0, 3.0, "leaf"), (5.0, 6.0, "other")]
    rows = {name: (own, total) for own, total, name in load_script("compile_events").self_times(events)}
    assert rows == {"kernel": (6.0, 10.0), "helper": (2.0, 3.0), "leaf": (1.0, 1.0), "other": (1.0, 1.0)}


def test_jit_perf_puts_samples_down_to_refcounting_before_the_mapping_that_holds_it():
    """perf shows Numba's code as bare addresses: ``bench/jit_perf.py`` counts each sample in
    the reference-count functions (which lie inside a JIT mapping) first, then in a mapping by
    its start, else in its shared object."""
    jit_perf = load_script("jit_perf")
    regions = [(0x1000, 0x2000, "a.bin"), (0x8000, 0x9000, "b.bin")]
    refcount = [(0x1050, 0x1060), (0x1060, 0x1080)]
    samples = [(0x1000, "[unknown]"), (0x1055, "[unknown]"), (0x107F, "[unknown]"), (0x1080, "[unknown]"),
               (0x8FFF, "[unknown]"), (0x9000, "(/usr/lib/libpython3.11.so.1.0)")]
    counts = jit_perf.attribute(samples, regions, refcount)
    assert counts == {"0x1000": 2, jit_perf.REFCOUNT: 2, "0x8000": 1, "libpython3.11.so.1.0": 1}


def test_jit_perf_names_the_instructions_of_the_hottest_windows():
    """Windows of WINDOW bytes ranked by their samples, each with its most frequent mnemonics
    from objdump's listing (addresses already adjusted to the mapping's)."""
    jit_perf = load_script("jit_perf")
    listing = "\n".join([
        "    1000:\t62 f1 7c 48 10 04 87 \tvmovups (%rdi,%rax,4),%zmm0",
        "    1007:\t62 f2 7d 48 b8 c1    \tvfmadd231ps %zmm1,%zmm0,%zmm2",
        "    100d:\t62 f2 7d 48 b8 c1    \tvfmadd231ps %zmm1,%zmm0,%zmm3",
        "    1100:\t48 39 c3             \tcmp    %rax,%rbx",
        "Disassembly of section .data:",
    ])
    instructions = jit_perf.parse_objdump(listing)
    assert instructions == {0x1000: "vmovups", 0x1007: "vfmadd231ps", 0x100D: "vfmadd231ps", 0x1100: "cmp"}
    full = jit_perf.parse_objdump(listing, full=True)  # --disassemble: with the operands
    assert full[0x1000] == "vmovups (%rdi,%rax,4),%zmm0" and full[0x1100] == "cmp    %rax,%rbx" and len(full) == 4
    ips = [0x1007] * 3 + [0x1100] + [0x5000]  # the last outside [lo, hi)
    rows = jit_perf.hot_windows(ips, 0x1000, 0x2000, instructions, top=5)
    assert rows == [(0, 0.75, [("vfmadd231ps", 2), ("vmovups", 1)]), (0x100, 0.25, [("cmp", 1)])]
