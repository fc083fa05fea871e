"""What a row times: a fastmlp backend (``FastmlpRunner``) or a peer, behind one interface.

A runner offers ``prepare(train)``, ``warmup(params, order)``, ``start(params, order)``,
``train(state, order)`` (the timed epoch) and ``accuracy(state, test)``; ``fastmlp.bench.peers``
describes it in full.
"""

from __future__ import annotations

from .. import optim
from ..backends import make_backend
from ..network import Architecture
from ..trainer import DivergenceError, train_epoch
from . import peers as peer_module
from .machine import blas_threads


class FastmlpRunner:
    """A fastmlp backend, trained epoch by epoch through the trainer's own loop (as ``fit`` does)."""

    peer = False

    def __init__(self, backend_name, arch, lr, batch_size, threads, optimizer=optim.Optimizer()):
        self.backend = make_backend(backend_name, arch, threads)
        self.optimizer = optimizer
        self.state = None
        self.name = backend_name
        self.arch = arch
        self.lr = lr
        self.batch_size = batch_size
        self.threads = getattr(self.backend, "threads", threads)
        if backend_name == "numpy":
            self.threads = blas_threads()  # its only threads are BLAS's
            self.implementation = f"fastmlp NumPy reference, {self.threads or 'default'} BLAS threads"
        else:
            if threads == "auto":  # (audit 79: it said one thread per sample, as before session 68)
                self.implementation = ("fastmlp compiled core (numba), threads='auto': plain per-sample SGD on one or "
                                       "two threads (two where the first hidden layer has 112+ units) and mini-batch on "
                                       "one or all Numba threads, by measured speed")
            else:
                self.implementation = (f"fastmlp compiled core (numba), threads={threads!r}: {self.threads} for "
                                       f"per-sample SGD, mini-batch on up to {threads}")

    @property
    def compile_seconds(self):
        return self.backend.compile_seconds

    @property
    def threads_used(self):
        """The most threads the timed training took (numba's ``threads="auto"`` chooses), else
        the threads it was given."""
        used = getattr(self.backend, "threads_used", None)
        return self.threads if used is None else used

    def prepare(self, train):
        self.train_split = train
        self.data = self.backend.prepare(train.pixels)

    def warmup(self, params, order):
        self.backend.warmup(params.copy(), self.data, self.train_split.labels, self.batch_size, self.optimizer,
                            optim.State.fresh(self.optimizer, params, 0))

    def start(self, params, order):
        self.state = optim.State.fresh(self.optimizer, params, 0)  # each repeat from step 0
        return params.copy()

    def train(self, params, order):
        try:
            train_epoch(self.backend, params, self.data, self.train_split.labels, order, self.lr, self.batch_size,
                        optimizer=self.optimizer, state=self.state)
        except DivergenceError:
            raise ArithmeticError(f"{self.name} diverged at lr={self.lr:g}: the loss became non-finite; try a smaller --lr") from None
        return params

    def accuracy(self, params, test):
        z = self.backend.logits(params, self.backend.for_inference(test.pixels))
        return float((z.argmax(axis=1) == test.labels).mean())


def runner_factories(plan, skipped, peer_threads, train_labels):
    """[(name, factory(arch, batch_size))] in run order: numpy, numba, then the peers.

    An implementation that cannot run (or, a peer, cannot train on ``train_labels``) is left out
    and its reason put in ``skipped``, except a backend named by --backends, which is an error.
    """
    factories = []
    for name in plan.backends:
        try:
            make_backend(name, Architecture((2, 2)), plan.threads)
        except ImportError as error:
            if plan.backends_explicit:
                raise RuntimeError(f"--backends {name}: the backend cannot load: {error}") from None
            skipped[name] = f"backend not available: {error}"
            continue
        factories.append((name, lambda arch, bs, name=name: FastmlpRunner(name, arch, plan.lr, bs, plan.threads,
                                                                          plan.optimizer)))
    available, unavailable = peer_module.available(plan.peers)
    skipped.update(unavailable)
    for name in available:
        reason = peer_module.data_problem(name, train_labels, plan.layers[0][-1])
        if reason is not None:
            skipped[name] = reason
            continue
        factories.append((name, lambda arch, bs, name=name: peer_module.make_runner(name, arch, plan.lr, bs, peer_threads, plan.seed)))
    return factories
