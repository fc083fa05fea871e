"""A second process that compiles half of a kernel's helpers while this one compiles the rest.

A cold first run spends most of its wait compiling, one helper after the other, in one process
(Numba compiles under a global lock). The helpers a kernel calls are compiled separately, and
Numba's on-disk cache is shared by processes (each entry is written whole, then renamed into
place), so a second process can compile some of them meanwhile. ``start`` launches
``python -m fastmlp._prewarm`` for that (``PLANS``):

- plain per-sample SGD: it calls the kernel's helpers last to first on tiny arrays of the
  training run's types, while this process trains on the interpreted kernel
  (``sgd_persample_chunk_interpreted``), whose calls compile them first to last and find, from
  the helper where they meet, what the other process has stored; the other process then compiles
  the kernel itself (the one training moves to once it is stored);
- mini-batch training: both processes run a chunk of two samples on the interpreted kernel and
  claim its large helpers in a directory they share, each compiling the next one nobody has
  claimed (``compile_share``; the other process first compiles the chunk's small helpers, which
  this one then loads: ``chunk_scalars``); this process then waits for the other's (``share``) and trains on the
  interpreted kernel, which needs nothing else compiled, while the other process goes on to
  compile the parallel kernel (the one training moves to once it is stored);
- plain per-sample SGD on two threads (``threads="auto"`` on a network whose one thread trains to
  two threads' bits: ``kernels.logits_in_halves``): started by the fit once the one-thread kernel
  is stored, it compiles the two-thread worker while the fit trains on one thread, and the fit
  may choose two threads once it is stored (``NumbaBackend._two_threads_ready``);
- per-sample training with an optimizer, dropout or sample weights (the general kernel, far too
  slow to train on interpreted): this process compiles the kernel, whose helpers Numba compiles
  as the kernel's typing meets them; the other process runs the kernel's Python code on two
  samples with only the helpers met last compiled (``kernels.sgd.LATE_HELPERS``), so that this
  process finds those in the cache when it gets there.

Every plan but "two-threads" (started once the fit has them) ends with the compiled conversion of
inputs to CSR rows (``csr_kernels``): until it is stored, both processes convert by NumPy
(``NumbaBackend._sparse_rows``), so that neither compiles it before its share of the kernel's
helpers (about 0.4 s each on an AMD EPYC Zen 4, where both used to compile it at once).

It runs only where it can help: on a cold cache (no index of the kernel yet), with two cores
available to this process and ``NUMBA_NUM_THREADS`` at least 2 (sweep workers and MPI ranks run
with 1), compiled (not under NUMBA_DISABLE_JIT), and unless ``FASTMLP_BACKGROUND_COMPILE=0``. The
other process changes nothing but the cache; if it is slow, killed or fails, this process
compiles whatever it has not stored, as it would alone. When this process exits normally, a
second process still compiling the kernel that training ran without is told to finish it, at a
lower priority (a run shorter than its compile would otherwise leave the cache cold for every run
after it; a fit that starts meanwhile on the same cache takes that process for its own rather
than start another compile of the same kernel, and claims the helpers with the two: ``compiling_elsewhere``;
the fit marks its second process as it starts it, under a lock, so that two fits started in the
same moment start one: ``_lock_start``); when a signal ends this
process, or Ctrl-C (an uncaught KeyboardInterrupt, or the command line's interrupted run:
``stop_at_exit``), it ends too (``_stop_started``, ``_exit_with_parent``).
``fastmlp train`` waits for it at its end instead (``cli._store_for_the_next_run``;
``NumbaBackend.compiling_for_later``), so that a run started next finds the kernel stored.

``tests/test_prewarm.py`` checks that the calls here have exactly the types the kernels' own
calls have (every helper is then a cache hit for the kernel), so that an edit of the kernels'
helpers that this module misses fails a test instead of quietly wasting the second core.
"""

import argparse
import atexit
import contextlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._atomic import _HOST, _process_exists

ENV_SWITCH = "FASTMLP_BACKGROUND_COMPILE"
_STARTED = []  # the processes started, kept (not collected while they run) and reaped by the next fit's start()
_SHARED = set()  # the claims directories whose share this process has compiled
SHARE_WAIT_SECONDS = 60.0  # the longest the fit waits for a helper the second process claimed


def per_sample_helpers(dtype, values_dtype):
    """The plain per-sample kernel's helpers (``kernels.sgd.sgd_persample_chunk``), as calls on tiny
    arrays of the types the kernel passes them, last used first."""
    from .kernels import activation, linear, loss

    real = np.dtype(dtype).type
    n_in, n_hidden, n_out = 6, 4, 3
    z, a = np.zeros(n_hidden, real), np.zeros(n_hidden, real)
    W, b = np.zeros((n_in, n_hidden), real), np.zeros(n_hidden, real)
    Wt, b_out = np.zeros((n_out, n_hidden), real), np.zeros(n_out, real)
    z_out, p = np.zeros(n_out, real), np.zeros(n_out, real)
    indices, values = np.arange(2, dtype=np.int32), np.ones(2, values_dtype)
    labels, targets = np.zeros(1, np.int64), np.empty((0, n_out), real)
    scale, lr = real(1 / 255), real(0.0)
    code = 1  # an activation or loss code: the value does not matter, the type does
    return [
        lambda: linear.sparse_row_update(W, b, z, indices, values, scale, lr),
        lambda: activation.activation_row_backward(z, a, code),
        lambda: linear.dense_row_backward_update(z, Wt, b_out, z_out, a, lr),
        lambda: loss.loss_row_backward(z_out, p, labels, targets, 0, code),
        lambda: loss.loss_row_forward(p, z_out, labels, targets, 0, code),
        lambda: linear.dense_row_forward(z_out, Wt, b_out, a),
        lambda: activation.activation_row_forward(a, code),
        lambda: linear.sparse_row_forward(z, W, b, indices, values, scale),
    ]


def compile_share(claims, dtype, values_dtype):
    """Compile this process's share of the mini-batch kernel's helpers (``kernels.minibatch.
    CHUNK_HELPERS``): run a chunk of two samples on the interpreted kernel
    (``minibatch_sgd_chunk_interpreted``), in which each of those helpers is called only by
    the first process to claim it in the directory ``claims`` (None: claim every one). The
    interpreter calls each helper with the compiled kernels' types, so what it compiles is what
    they link. The processes take the helpers in the order a chunk first calls them, each the
    next one nobody has taken (taking the largest one first in this process measured no better:
    BENCHMARKS.md). The chunk's results mean nothing (its scratch starts zeroed, so a helper left
    out leaves nothing to index out of bounds)."""
    from .kernels import minibatch

    def claiming(name, helper):
        def call(*args):
            if _claim(claims, name):
                try:
                    helper(*args)
                finally:
                    _mark_done(claims, name)
        return call

    replaced = {name: claiming(name, getattr(minibatch, name)) for name in minibatch.CHUNK_HELPERS}
    replaced["_first_nonfinite"] = lambda losses: -1  # losses left out must not end the chunk early
    backend, params, data = _tiny_run(dtype, values_dtype, 1)
    backend.train_chunk_on(minibatch.interpreted(**replaced), params, data, np.zeros(2, np.int64), 2)


def chunk_scalars(dtype, values_dtype):
    """The mini-batch chunk's small compiled helpers (the step's scalars, the batch's loss sum), in
    the second process before its share of the large ones (``compile_share``): a two-sample chunk
    on the interpreted kernel with the large helpers left out, which calls them with a training
    run's types. The fit's process meets them after its first large helper, and then loads them
    from the cache (about 0.35 s less on its path, AMD EPYC Zen 2)."""
    from .kernels import minibatch

    left_out = {name: (lambda *args: None) for name in minibatch.CHUNK_HELPERS}
    backend, params, data = _tiny_run(dtype, values_dtype, 1)
    backend.train_chunk_on(minibatch.interpreted(**left_out), params, data, np.zeros(2, np.int64), 2)


def _tiny_run(dtype, values_dtype, threads):
    """(backend, params, data) of a 6-4-3 network on two rows of six ones: a training run's
    types (float ``dtype``, inputs of ``values_dtype``) on the smallest arrays."""
    from .backends import make_backend
    from .network import Architecture, init_params

    arch = Architecture((6, 4, 3), "sigmoid", "cross_entropy", dtype=dtype)
    backend = make_backend("numba", arch, threads)
    # converted by NumPy: the compiled conversion is compiled last (``csr_kernels``)
    return backend, init_params(arch, "xavier", seed=0), backend.prepare(np.ones((2, 6), values_dtype), compiled=False)


def csr_kernels(values_dtype):
    """The compiled conversion of inputs of ``values_dtype`` to CSR rows (``kernels.sparse_rows``),
    last in every plan: the fit's process converts by NumPy meanwhile (``NumbaBackend.
    _sparse_rows``), and the runs after it find the kernels in the cache."""
    from . import kernels

    return lambda: kernels.sparse_rows(np.ones((2, 6), values_dtype), parts=kernels.PARTS)


def _claim(claims, name):
    """True if this process is the first to claim the compile of helper ``name`` in ``claims``."""
    if claims is None:
        return True
    try:
        os.close(os.open(os.path.join(claims, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    except OSError:  # the directory is gone (the fit's process ended): compile it anyway
        return True
    return True


def _mark_done(claims, name):
    if claims is not None:
        with contextlib.suppress(OSError):
            os.close(os.open(os.path.join(claims, name + ".done"), os.O_CREAT | os.O_WRONLY))


def share(process):
    """In the fit's process, before its first chunk on the interpreted kernel: compile its share
    of the helpers with the second ``process`` (``start``), then wait until that process has
    stored the ones it claimed (or has ended): the chunk then finds every helper compiled here or
    in the cache, instead of compiling one a second time. Once per process and second process."""
    claims = getattr(process, "fastmlp_claims", None)
    if claims is None or claims in _SHARED:
        return
    _SHARED.add(claims)
    _, dtype, values_dtype = process.fastmlp_plan
    compile_share(claims, dtype, values_dtype)
    from .kernels.minibatch import CHUNK_HELPERS

    deadline = time.monotonic() + SHARE_WAIT_SECONDS
    for name in CHUNK_HELPERS:
        path = os.path.join(claims, name)
        while (os.path.exists(path) and not os.path.exists(path + ".done") and process.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.005)


def minibatch_kernel(dtype, values_dtype, claims=None):
    """The chunk's small helpers (``chunk_scalars``), the large ones (a share of them with
    ``claims``: ``compile_share``), then the
    parallel mini-batch kernel itself, called as the backend calls it (the fit's process trains
    on the interpreted kernel meanwhile: ``NumbaBackend``)."""
    def kernel():
        backend, params, data = _tiny_run(dtype, values_dtype, "auto")
        backend.warmup(params, data, np.zeros(2, np.int64), 2, inference=False)

    return [lambda: chunk_scalars(dtype, values_dtype), lambda: compile_share(claims, dtype, values_dtype), kernel,
            csr_kernels(values_dtype)]


def per_sample_kernel(dtype, values_dtype, claims=None):
    """The plain per-sample kernel's helpers, last used first, then the kernel itself, called as
    the backend calls it (the fit's process trains on the interpreted kernel meanwhile:
    ``NumbaBackend``). ``claims``: unused (the mini-batch plan's)."""
    def kernel():
        backend, params, data = _tiny_run(dtype, values_dtype, 1)
        backend.warmup(params, data, np.zeros(2, np.int64), 1, inference=False)

    return per_sample_helpers(dtype, values_dtype) + [kernel, csr_kernels(values_dtype)]


# Options whose runs take every branch of the general per-sample kernel between them: Numba types
# (and so compiles the helpers of) all of them whatever the fit's options: the modal form reading
# the CSR rows directly or input dropout's copies, the lazy form (momentum near 1), Adam's dense
# step.
GENERAL_VARIANTS = (
    dict(momentum=0.9, weight_decay=1e-4, dropout=0.2),
    dict(momentum=0.9, input_dropout=0.2),
    dict(momentum=0.99, input_dropout=0.2),
    dict(optimizer="adam"),
)


def general_late_helpers(dtype, values_dtype, claims=None):
    """The general per-sample kernel's helpers that the fit's compile of the kernel reaches last
    (``kernels.sgd.LATE_HELPERS``), compiled by two-sample runs of the kernel's Python code that
    call only those compiled (``persample_chunk_partly_compiled``), with sample weights, over
    ``GENERAL_VARIANTS``. ``claims``: unused (the mini-batch plan's)."""
    def late():
        from . import optim
        from .kernels import sgd

        kernel = sgd.persample_chunk_partly_compiled()
        x = np.zeros((2, 6), values_dtype)
        x[0, :4] = x[1, 2:] = 1  # rows 0-1 idle at the last step: the lazy form catches them up
        for options in GENERAL_VARIANTS:
            backend, params, _ = _tiny_run(dtype, values_dtype, 1)
            data = backend.prepare(x, compiled=False)
            chosen = optim.Optimizer(**options)
            backend.train_per_sample_on(kernel, params, data, np.zeros(len(data), np.int64), chosen,
                                        optim.State.fresh(chosen, params, 0), np.ones(len(data), params.dtype))

    return [late, csr_kernels(values_dtype)]


def two_thread_worker(dtype, values_dtype, claims=None):
    """The two-thread per-sample kernel's worker (``kernels.sgd._split_hidden_worker``), which
    ``threads="auto"`` moves per-sample training to, chunk by chunk, once it is compiled: started by
    the fit after the plain per-sample kernel is stored (training here runs on that meanwhile), by a
    two-sample run of a 6-32-3 network on two threads (16 units each). ``claims``: unused."""
    def worker():
        from .backends import make_backend
        from .network import Architecture, init_params

        arch = Architecture((6, 32, 3), "sigmoid", "cross_entropy", dtype=dtype)
        backend = make_backend("numba", arch, 2)
        data = backend.prepare(np.ones((2, 6), values_dtype), compiled=False)
        backend.warmup(init_params(arch, "xavier", seed=0), data, np.zeros(2, np.int64), 1, inference=False)

    return [worker]


PLANS = {"per-sample": per_sample_kernel, "mini-batch": minibatch_kernel, "general": general_late_helpers,
         "two-threads": two_thread_worker}


def kernel_dtypes(plan, dtype, values_dtype):
    """The dtypes of ``plan``'s kernel's float and input arguments, by name (``compiled_here``'s and
    ``cache_is_cold``'s ``argument_dtypes``)."""
    return {"W1" if plan == "two-threads" else "params": dtype, "values": values_dtype}


_positions = {}  # (py_func, argument names): their positions, as _argument_positions finds them


def _argument_positions(kernel, argument_dtypes):
    """(positions, dtypes) of the arguments named in ``argument_dtypes`` ({name: dtype}) in
    ``kernel``'s signature; a name it lacks is a TypeError, as Python's own for a keyword. (Every
    fit asks, partial_fit's calls too: inspect.signature took 0.084 ms a call, a tenth of a warm
    partial_fit of 32 samples.)"""
    key = (kernel.py_func, tuple(argument_dtypes))
    where = _positions.get(key)
    if where is None:
        arguments = list(inspect.signature(kernel.py_func).parameters)
        unknown = [argument for argument in argument_dtypes if argument not in arguments]
        if unknown:
            raise TypeError(f"{kernel.py_func.__qualname__} has no argument {', '.join(map(repr, unknown))}")
        where = _positions[key] = tuple(arguments.index(argument) for argument in argument_dtypes)
    return where, tuple(np.dtype(value) for value in argument_dtypes.values())


def compiled_here(kernel, dtype=None, values_dtype=None, *, argument_dtypes=None):
    """Whether this process holds ``kernel`` compiled for a training run's float ``dtype`` and
    input ``values_dtype`` (or the arguments' dtypes by name in ``argument_dtypes``, as for
    ``cache_is_cold``): a kernel compiled for float32 inputs does not make a float64 run warm
    (session 60: a process that had fitted one dtype blocked on the whole compile of another)."""
    if argument_dtypes is None:
        argument_dtypes = {"params": dtype, "values": values_dtype}
    where, wanted = _argument_positions(kernel, argument_dtypes)
    return any(tuple(np.dtype(str(signature[i].dtype)) for i in where) == wanted
               for signature in getattr(kernel, "signatures", ()))


def cache_is_cold(kernel, dtype=None, values_dtype=None, *, argument_dtypes=None):
    """True when Numba's cache has nothing of ``kernel`` to load: no index, or one that Numba
    would not use (the sources changed since), or, given a training run's float ``dtype`` and
    input ``values_dtype`` (the kernel's arguments ``params`` and ``values``; or any arguments'
    dtypes by name in ``argument_dtypes``), none compiled for those types (a float32 run does not
    warm a float64 one). Where Numba's cache internals differ from the ones read here, a present
    index counts as warm."""
    if argument_dtypes is None and dtype is not None:
        argument_dtypes = {"params": dtype, "values": values_dtype}
    if argument_dtypes is not None:  # (outside the try below: a name of ours that is wrong is an error, not "warm")
        where, wanted = _argument_positions(kernel, argument_dtypes)  # (start() lets its TypeError through)
    path = Path(kernel.stats.cache_path)
    name = kernel.py_func.__qualname__
    if not any(path.glob(f"*.{name}-*.nbi")):
        return True
    try:
        # Numba's own reader: {} for an index of other sources; keys start with the signature
        index = kernel._cache._cache_file._load_index()
        if argument_dtypes is None:
            return not index
        return not any(tuple(np.dtype(str(key[0][i].dtype)) for i in where) == wanted for key in index)
    except Exception:  # noqa: BLE001 - internals of another Numba version: keep the old answer
        return False


CLAIMS_PREFIX = "fastmlp-compile-"
STALE_CLAIMS_SECONDS = 3600.0  # a claims directory not named after its process: kept this long


def new_claims_directory():
    """A new claims directory in the temporary folder, named after this process
    (``fastmlp-compile-PID-...``), once those of processes that have ended are removed: the exit
    handler (``_stop_started``) removes a process's own, but not when it is killed."""
    remove_stale_claims(tempfile.gettempdir())
    return tempfile.mkdtemp(prefix=f"{CLAIMS_PREFIX}{os.getpid()}-")


def remove_stale_claims(folder):
    """Remove the claims directories in ``folder`` whose process has ended, and those not named
    after a process (older fastmlp) once STALE_CLAIMS_SECONDS old. Others' (no permission) and
    anything that cannot be read are left alone."""
    try:
        entries = [entry for entry in os.scandir(folder) if entry.name.startswith(CLAIMS_PREFIX)]
    except OSError:
        return
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            owner, dash, _ = entry.name[len(CLAIMS_PREFIX):].partition("-")
            if dash and owner.isdigit():
                if _process_exists(int(owner)):
                    continue
            elif time.time() - entry.stat(follow_symlinks=False).st_mtime < STALE_CLAIMS_SECONDS:
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)


# The names of a Python interpreter's executable: python, python3, python3.11, python3.13t (free
# threading), python3.11d and python3.13td (debug), python3.7m, python3-dbg (Debian's debug
# build), python_d.exe (Windows' debug build), python3.11-intel64 (macOS' universal builds),
# pythonw.exe, pypy3, graalpy.
_PYTHON_NAME = re.compile(r"(python|pypy|graalpy)(\d+(\.\d+)*)?[dmtuw]{0,3}(-dbg|_d|-intel64)?(\.exe)?",
                          re.IGNORECASE)


def python_executable():
    """The Python to run the second process with: multiprocessing's (``sys.executable``, or what
    an application set with ``multiprocessing.set_executable``), if its name is a Python's; else
    None. A frozen application's executable, or the host program of an embedded Python (uwsgi,
    Blender, a C++ application: its ``sys.executable``), is not a Python to run ``-m`` with: it
    was started with fastmlp's arguments (audit 51)."""
    if getattr(sys, "frozen", False):
        return None
    from multiprocessing import spawn

    executable = spawn.get_executable()
    if not executable:
        return None
    executable = os.fsdecode(executable)
    return executable if _PYTHON_NAME.fullmatch(os.path.basename(executable)) else None


def start(plan, dtype, values_dtype):
    """Start the second process for ``plan`` ("per-sample": plain per-sample SGD, "mini-batch",
    "general": per-sample SGD with an optimizer, dropout or sample weights, or "two-threads": the
    two-thread per-sample worker) for a run of float
    ``dtype`` on inputs of ``values_dtype`` if it can help (module docstring); returns the process
    or None."""
    import numba

    from .kernels._threads import available_cores

    _forget_ended()  # (each fit asks: a warm cache's fits return below, before any process starts)
    if numba.config.DISABLE_JIT or os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    kernel = _kernel_of(plan)
    executable = python_executable()
    if executable is None:
        return None  # a frozen application, or Python embedded in another program (uwsgi, a C++ host)
    if available_cores() < 2 or numba.config.NUMBA_NUM_THREADS < 2:
        return None  # one core, or told to use one thread (sweep workers, MPI ranks)
    key = (plan, np.dtype(dtype).name, np.dtype(values_dtype).name)
    for running in _STARTED:
        if getattr(running, "fastmlp_plan", None) == key and running.poll() is None:
            # already compiling this (several fits at once, one after another, or warmup's,
            # started ahead of the fit that needs it)
            return running
    dtypes = kernel_dtypes(plan, dtype, values_dtype)
    if compiled_here(kernel, argument_dtypes=dtypes):
        return None  # (for these types: another dtype's or input kind's kernel is no help)
    told = None
    lock = None
    try:
        if not cache_is_cold(kernel, argument_dtypes=dtypes):
            return None
        # one process at a time from here to its second process's mark (_lock_start)
        lock = _lock_start(plan, dtype, values_dtype)
        if not cache_is_cold(kernel, argument_dtypes=dtypes):
            return None  # stored while this process waited for the lock
        elsewhere = compiling_elsewhere(plan, dtype, values_dtype)
        if elsewhere is not None:
            return elsewhere  # an earlier script's, finishing after its exit, or a run's beside this one
        claims = new_claims_directory() if plan == "mini-batch" else None
        command = [executable, "-m", "fastmlp._prewarm", plan, np.dtype(dtype).name, np.dtype(values_dtype).name,
                   "--parent", str(os.getpid())] + ([] if claims is None else ["--claims", claims])
        passed = ()
        if os.name == "posix":  # a pipe on which the exit handler says "finish" (``_exit_with_parent``)
            listen, told = os.pipe()
            command, passed = command + ["--told", str(listen)], (listen,)
        try:
            # a session of its own: Jupyter's interrupt signals the kernel's whole process group
            # (the compile was lost to every interrupted cell); an interrupted run stops it at its
            # exit (_stop_started), a killed one by the parent-death signal (_exit_with_parent)
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, pass_fds=passed, start_new_session=os.name == "posix")
        finally:
            for fd in passed:
                os.close(fd)
        # its mark, made here: the process makes it only after its start-up (a second or so), and
        # a fit started meanwhile on the same cache compiled the same kernels in two processes of
        # its own (audit 34: 33 cache files stored twice, 46.7 s for the pair against 39.4 s alone)
        mark = _mark_compiling(plan, dtype, values_dtype, process.pid) if isinstance(
            getattr(process, "pid", None), int) else None
    except (OSError, ValueError, AttributeError):  # no process, or a Numba without these cache attributes
        if told is not None:
            os.close(told)
        return None
    finally:
        _unlock_start(lock)
    process.fastmlp_plan = key
    process.fastmlp_mark = mark  # (removed here if this process stops it: ``_stop_started``)
    process.fastmlp_claims = claims
    process.fastmlp_told = told
    _STARTED.append(process)
    return process


def _forget_ended():
    """Reap the second processes that have ended (a zombie each, until then), close their pipes
    and remove their claims directories: not left for this process's exit, since a kernel (or a
    notebook) lives long."""
    for ended in [other for other in _STARTED if other.poll() is not None]:
        _close_told(ended)
        if getattr(ended, "fastmlp_claims", None):
            shutil.rmtree(ended.fastmlp_claims, ignore_errors=True)
        _STARTED.remove(ended)


MARK_PREFIX = "fastmlp-compiling-"  # + plan-dtype-values_dtype-pid@host, in the kernel's cache directory


def _marks_folder(plan):
    """Where the marks of ``plan`` go: its kernel's cache directory, so that only processes that
    share that cache see each other's."""
    return Path(_kernel_of(plan).stats.cache_path)


def _plan_name(plan, dtype, values_dtype):
    """"plan-dtype-values_dtype", as the marks and the start lock name a compile."""
    return f"{plan}-{np.dtype(dtype).name}-{np.dtype(values_dtype).name}"


def _mark_compiling(plan, dtype, values_dtype, pid=None):
    """An empty file in the kernel's cache directory that says the second process ``pid`` (this
    one by default) compiles ``plan`` for these types (``compiling_elsewhere``), made by the fit's
    process as soon as it has started it and again by that process itself; its path, or None
    where it cannot be written (the process then goes on unseen, as before)."""
    try:
        folder = _marks_folder(plan)
        folder.mkdir(parents=True, exist_ok=True)
        pid = os.getpid() if pid is None else pid
        path = folder / f"{MARK_PREFIX}{_plan_name(plan, dtype, values_dtype)}-{pid}@{_HOST}"
        path.touch()
    except (OSError, AttributeError):
        return None
    return path


START_LOCK_PREFIX = "fastmlp-starting-"  # + plan-dtype-values_dtype, beside the marks
START_LOCK_SECONDS = 5.0  # a lock older than this was left by a process killed while it held it


def _lock_start(plan, dtype, values_dtype):
    """A lock file (made with O_EXCL) in the marks' folder, held by one process at a time from
    its look for another's second process (``compiling_elsewhere``) to its own second process's
    mark: without it, two fits started in the same moment each found no mark and each started a
    compile of the same kernels. Waits up to START_LOCK_SECONDS for another's; returns its path,
    or None where it cannot be made (then as before: no lock)."""
    try:
        folder = _marks_folder(plan)
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, AttributeError):
        return None
    path = folder / f"{START_LOCK_PREFIX}{_plan_name(plan, dtype, values_dtype)}"
    deadline = time.monotonic() + START_LOCK_SECONDS
    while True:
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return path
        except FileExistsError:
            try:
                stale = time.time() - path.stat().st_mtime > START_LOCK_SECONDS
            except OSError:
                continue  # released meanwhile
            if stale:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        except OSError:
            return None


def _unlock_start(path):
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _unmark(path):
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def compiling_elsewhere(plan, dtype, values_dtype):
    """A second process of another fit's process compiling ``plan`` for these types into this
    process's cache (``_mark_compiling``): one an earlier script told to finish at its exit, or a
    fit's running beside this one. A fit adopts it (``start``) rather than start a second
    compile of the same kernel beside it (the two would share the second core, and the kernel
    would be stored later). Marks of processes that have ended (killed, so without removing
    theirs) are removed. Returns an ``_Elsewhere``, or None."""
    try:
        folder = _marks_folder(plan)
        prefix = f"{MARK_PREFIX}{_plan_name(plan, dtype, values_dtype)}-"
        marks = [entry for entry in os.scandir(folder) if entry.name.startswith(prefix)]
    except (OSError, AttributeError):
        return None
    mine = {getattr(process, "pid", None) for process in _STARTED}
    key = (plan, np.dtype(dtype).name, np.dtype(values_dtype).name)
    for entry in marks:
        pid, _, host = entry.name[len(prefix):].partition("@")
        if not pid.isdigit() or int(pid) in mine:
            continue
        if host and host != _HOST:
            continue  # another machine's, on a shared cache: its pid means nothing here (and it is not ours to remove)
        if _compiler_running(int(pid), key):
            return _Elsewhere(int(pid), Path(entry.path), key)
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    return None


def _compiler_running(pid, key=None):
    """Whether ``pid`` is a running ``fastmlp._prewarm`` process (where /proc shows it: Linux;
    elsewhere, whether the process exists), compiling ``key`` (plan, dtype, values_dtype) when
    given: a mark left by a killed second process names a pid that may come back as another
    plan's (pids wrap at 32768), which a cold fit took for its own compile and waited on (94
    samples/s; audit 34)."""
    if not os.path.isdir("/proc/self"):
        return _process_exists(pid)
    arguments = _command_line(pid)  # (None: gone)
    if arguments is None or b"fastmlp._prewarm" not in arguments or _is_zombie(pid):
        return False
    if key is None:
        return True
    at = arguments.index(b"fastmlp._prewarm") + 1
    return arguments[at : at + 3] == [part.encode() for part in key]


def _claims_of(pid):
    """The claims directory on second process ``pid``'s command line (``--claims``), or None."""
    arguments = _command_line(pid) or []
    if b"--claims" in arguments[:-1]:
        return os.fsdecode(arguments[arguments.index(b"--claims") + 1])
    return None


def _command_line(pid):
    """Process ``pid``'s arguments as /proc shows them (Linux), or None."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().split(b"\0")
    except OSError:
        return None


class _Elsewhere:
    """Another fit's second process (``compiling_elsewhere``), in the place of one this process
    would start: ``poll`` is None while it compiles (its mark there and the process running), then
    0; ``wait`` waits for that. It is not this process's to stop or tell anything at exit."""

    fastmlp_told = None

    def __init__(self, pid, mark, key):
        self.pid, self.fastmlp_mark, self.fastmlp_plan = pid, mark, key
        self.returncode = None
        # its fit's claims directory (mini-batch), which this process then joins (``share``): a fit
        # started beside another compiled every helper itself (24 of 90 cache files stored twice
        # by a pair of cold fits started together, after their second process was made one)
        self.fastmlp_claims = _claims_of(pid)

    def poll(self):
        if self.returncode is None and not (self.fastmlp_mark.exists() and _compiler_running(self.pid, self.fastmlp_plan)):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"fastmlp._prewarm (process {self.pid})", timeout)
            time.sleep(0.1)
        return self.returncode


def _kernel_of(plan):
    """The kernel whose cold start ``plan`` helps."""
    from . import kernels

    if plan == "two-threads":
        from .kernels import sgd

        return sgd._split_hidden_worker
    return {"per-sample": kernels.sgd_persample_chunk, "mini-batch": kernels.minibatch_sgd_chunk,
            "general": kernels.persample_chunk}[plan]


FINISH_AFTER_EXIT = ("per-sample", "mini-batch", "two-threads")  # the plans whose kernel training here ran without
_stopping_at_exit = []  # non-empty once the command line was interrupted (stop_at_exit)


def stop_at_exit():
    """Stop the second processes at exit rather than have them finish: the command line calls it
    when Ctrl-C or SIGTERM ended its run (it exits normally then, with 130 or 143), as a signal
    that ends a process outright does."""
    _stopping_at_exit.append(True)


def _stop_started():
    """At exit: a process still compiling the kernel training here ran without (the plain
    per-sample one, or the parallel mini-batch one) is told to finish it (``_exit_with_parent``):
    stopped, it would leave the cache without that kernel, and every later run would start cold
    and train on the slow interpreted kernel again, however often it ran (31k against 249k
    samples/s per-sample, AMD EPYC Zen 2). Any other is stopped, as is one whose kernel is stored by
    now (compiled here: ``fastmlp warmup``), and every one after an interrupted run: once this
    process has compiled its kernel, the kernel's cache entry holds the helpers too, so their own
    entries no longer matter."""
    # an uncaught Ctrl-C ends a script through its exit handlers (sys.last_value: the exception
    # the interpreter printed): an interrupted run, as one a signal ended; not in IPython, where
    # it is the exception of some earlier cell, and the session went on after it
    interrupted = _stopping_at_exit or (isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
                                        and not _in_ipython())
    for process in _STARTED:
        if process.poll() is None and (interrupted or not (_still_needed(process) and _tell_to_finish(process))):
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            # its mark, which it could not remove (SIGTERM's default action; TerminateProcess on
            # Windows, where no pipe tells it to finish): made here, under its pid
            _unmark(getattr(process, "fastmlp_mark", None))
        _close_told(process)
        if getattr(process, "fastmlp_claims", None):
            shutil.rmtree(process.fastmlp_claims, ignore_errors=True)


def _in_ipython():
    from .progress import ipython_shell

    return ipython_shell() is not None


def _still_needed(process):
    """Whether ``process``'s plan is one to finish and its kernel is still missing from the cache."""
    plan, dtype, values_dtype = process.fastmlp_plan
    if plan not in FINISH_AFTER_EXIT:
        return False
    try:
        return cache_is_cold(_kernel_of(plan), argument_dtypes=kernel_dtypes(plan, dtype, values_dtype))
    except Exception:  # noqa: BLE001 - at exit: no traceback; a Numba without these cache attributes, or our own slip
        return True


def _tell_to_finish(process):
    """Say "finish" on ``process``'s pipe: True if said."""
    told = getattr(process, "fastmlp_told", None)
    if told is None:
        return False
    try:
        os.write(told, b"f")
    except OSError:
        return False
    return True


def _close_told(process):
    told = getattr(process, "fastmlp_told", None)
    if told is not None:
        process.fastmlp_told = None
        with contextlib.suppress(OSError):
            os.close(told)


def finishing_after(pid):
    """The process ids of the second processes fit process ``pid`` started that are still running
    (after its exit: those it told to finish; Linux, elsewhere none are found): for tools that
    time cold starts or remove a cache once a run has ended (``bench/startup.py``, the tests)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        arguments = _command_line(entry) if entry.isdigit() else None
        if arguments is None:
            continue
        if b"fastmlp._prewarm" in arguments and b"--parent" in arguments:
            if arguments[arguments.index(b"--parent") + 1] == str(pid).encode():
                found.append(int(entry))
    return found


def wait_for_finishing(pid, timeout):
    """Wait until the second processes of ended fit process ``pid`` (``finishing_after``) have
    ended, at most ``timeout`` seconds; True if they have."""
    deadline = time.monotonic() + timeout
    while True:
        running = [other for other in finishing_after(pid) if not _is_zombie(other)]
        if not running:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True  # gone


atexit.register(_stop_started)


def _forget_started():
    """In a child forked from a fit's process: the second processes are the parent's (the child's
    exit would otherwise remove their claims directories, which the parent still uses)."""
    for process in _STARTED:
        _close_told(process)  # (this child's copy)
    _STARTED.clear()
    _SHARED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_started)


def main(argv=None):
    parser = argparse.ArgumentParser(description="compile a kernel's helpers into Numba's cache")
    parser.add_argument("plan", choices=list(PLANS))
    parser.add_argument("dtype", choices=["float32", "float64"])
    parser.add_argument("values_dtype", choices=["uint8", "float32", "float64"])
    parser.add_argument("--claims", help="a directory where the fit's process and this one claim helpers (mini-batch)")
    parser.add_argument("--parent", type=int, help="the fit's process: this one ends when it does, unless told to finish")
    parser.add_argument("--told", type=int, help="a pipe on which the fit's process says 'finish' at its normal exit")
    args = parser.parse_args(argv)
    mark = _mark_compiling(args.plan, args.dtype, args.values_dtype)
    _exit_with_parent(args.parent, args.told, mark)
    try:
        for call in PLANS[args.plan](args.dtype, args.values_dtype, args.claims):
            call()
    finally:
        _unmark(mark)
    return 0


PARENT_POLL_SECONDS = 1.0


def _watch_parent(parent, interval=PARENT_POLL_SECONDS):
    """Where there is no parent-death signal (macOS, Windows): a daemon thread that ends this
    process (a sweep's pool worker) once the sweep's process ``parent`` is gone, looking every
    ``interval`` seconds: on POSIX once this process is reparented; on Windows, where a child
    keeps its parent's pid (and a venv's launcher may stand between them: audit 44), once
    ``parent`` no longer runs. A killed sweep's workers otherwise waited for work for ever there
    (audit 41). Not for the compile's second process, which another path ends or lets finish."""
    import threading

    if os.name == "nt":
        def gone():
            return not _process_exists(parent)
    else:
        def gone():
            return os.getppid() != parent

    def watch():
        while True:
            time.sleep(interval)
            if gone():
                os._exit(0)

    threading.Thread(target=watch, name="fastmlp-parent-watch", daemon=True).start()


def _exit_with_parent(parent, told=None, mark=None):
    """End this process when the fit's process ``parent`` ends, unless it said "finish" on the
    pipe ``told`` first (its normal exit: ``_stop_started``); then finish, at a lower priority.
    Linux: the kernel's parent-death signal (a thread watching could not run while LLVM holds the
    GIL; the handler runs once the call compiling runs Python again, within seconds). When a signal
    (SIGTERM, SIGKILL) ends the fit's process its exit handler does not run: nobody asked for this
    compile then. The signal also comes when the thread that started this process ends (a fit in
    a thread) while its process goes on: this one goes on too. A claims directory left behind is
    removed by the next cold fit (``remove_stale_claims``), and a ``mark`` left by a process
    ended by a signal by the next fit that finds it (``compiling_elsewhere``). Without ``told``
    (a sweep's pool workers: ``sweeps._single_threaded_worker``) this process ends with its
    parent's process all the same (elsewhere than on Linux a sweep's workers watch their parent:
    ``_watch_parent``)."""
    import ctypes
    import signal

    if parent is None or not sys.platform.startswith("linux") or not hasattr(signal, "SIGUSR2"):
        return

    def parent_ended(*_):
        if os.getppid() == parent:
            return  # the thread that started this process ended, not its process
        try:
            said = os.read(told, 1) if told is not None else b""
        except OSError:  # nothing said: the pipe's other end is open elsewhere
            said = b""
        if said != b"f":
            _unmark(mark)
            os._exit(0)
        with contextlib.suppress(OSError):
            os.nice(10)  # compiling for the next run: whatever runs now comes first

    if told is not None:
        os.set_blocking(told, False)
    signal.signal(signal.SIGUSR2, parent_ended)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGUSR2)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # ended before the signal was asked for
        parent_ended()


if __name__ == "__main__":
    sys.exit(main())
