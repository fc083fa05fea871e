"""What a ``fastmlp bench`` run measures: its command-line options and the ``Plan`` they give.

Each value is checked as it is parsed (``fastmlp._cli_options``); ``plan_from_args`` adds the
checks that need several options at once. Both end in a ``UsageError`` that names the option
(exit status 2), before any data is loaded. The checks that need the data (``--samples`` or a
batch size beyond the training samples, ``--layers`` that do not fit its inputs and classes:
``dataset.load_splits``) come after it is loaded, as a ValueError that names the option (exit
status 1, as ``train``'s data-dependent mistakes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import _cli_options as options
from .._atomic import target_problem
from .._cli_options import UsageError
from .._extras import which_is
from ..backends import BACKENDS
from ..network import ACTIVATIONS, Architecture
from ..optim import Optimizer
from ..plot import FIGURE_SUFFIXES
from . import peers as peer_module

DEFAULT_BATCH_SIZES = (1, 32, 128, 1024)
DEFAULT_LAYERS = ((784, 20, 10), (784, 128, 10), (784, 800, 10))
DEFAULT_ACTIVATIONS = ("sigmoid", "relu")
DEFAULT_BACKENDS = ("numpy", "numba")
DEFAULT_REPEATS = 5
DEFAULT_MAX_SECONDS = 10.0
QUICK = {"batch_sizes": (1, 128), "layers": ((784, 128, 10),), "activations": ("sigmoid",), "samples": 10_000, "repeats": 3}
ALL_PEERS = "all"


def _peer_list(text):
    """``all`` or a comma list of peer names -> a tuple of peer names."""
    if text.strip() == ALL_PEERS:
        return peer_module.PEERS
    return options.item_list(options.choice(peer_module.PEERS), example="torch,jax")(text)


def add_options(parser):
    """The ``fastmlp bench`` options, each with the parser that checks its value."""
    add = parser.add_argument
    positive = options.integer(1)
    add("--batch-sizes", action="append", type=options.item_list(positive, example="1,32,128"), metavar="LIST", help="comma list, repeatable (default 1,32,128,1024)")
    add("--layers", action="append", type=options.layer_sizes, metavar="SIZES", help="one network per option, e.g. 784,128,10; repeatable (default 784,20,10 784,128,10 784,800,10)")
    add("--activations", action="append", type=options.item_list(options.choice(ACTIVATIONS), example="sigmoid,relu"), metavar="LIST", help=f"hidden activations, comma list (default sigmoid,relu; any of {', '.join(ACTIVATIONS)})")
    add("--backends", action="append", type=options.item_list(options.choice(BACKENDS), example="numpy,numba"), metavar="LIST", help="numpy and/or numba, a comma list (default numpy,numba; numba is skipped with a note if it cannot load)")
    add("--peers", nargs="?", const=peer_module.PEERS, type=_peer_list, metavar="LIST", help=f"also time other libraries: all (the default of a bare --peers) or a comma list of {', '.join(peer_module.PEERS)}; needs fastmlp[peers]")
    add("--quick", action="store_true", help="a small subset that runs well under a minute: bs 1 and 128, 784-128-10 sigmoid, 10,000 samples, 3 repeats (explicit options win)")
    add("--samples", type=positive, metavar="N", help="train on the first N training samples (default all 60,000)")
    add("--repeats", type=positive, metavar="N", help=f"timed epochs per row; figures are their median (default {DEFAULT_REPEATS})")
    add("--max-seconds", type=options.number(allow_zero=True), metavar="S", help=f"time rows whose repeat would exceed S seconds on a smaller slice, marked * (default {DEFAULT_MAX_SECONDS:g}; 0 = never)")
    add("--threads", type=options.threads, metavar="N|auto", help="numba's threads, as fastmlp train's (default auto: plain per-sample SGD on one or two where the "
        "first hidden layer has 112+ units, mini-batch on one or all, by measured speed)")
    add("--peer-threads", type=positive, metavar="N", help="torch.set_num_threads for the torch peer (default: the usable cores)")
    add("--lr", type=options.number(), metavar="RATE", help="learning rate (default 0.1)")
    add("--seed", type=options.integer(0), metavar="N", help="initial weights and sample order (default 0)")
    add("--data", type=options.path, metavar="DIR", help="directory with the MNIST files (default: $FASTMLP_DATA, else the user cache)")
    add("--json", action="store_true", help="one JSON object per line (format below) instead of the table")
    add("--plot", type=options.new_file(FIGURE_SUFFIXES), metavar="FILE.png", help="also draw a chart of samples/s in the format of the suffix (.png, .pdf, .svg; needs matplotlib: fastmlp[plot])")
    add("--progress", action="store_true", default=None, help="progress on stderr even when it is not a terminal")
    add("--no-progress", dest="progress", action="store_false", help="no progress on stderr")
    options.add_optimizer_options(parser)  # fastmlp's backends only: the peers train with plain SGD


@dataclass(frozen=True)
class Plan:
    """What to measure, validated from the command-line options."""

    batch_sizes: tuple = DEFAULT_BATCH_SIZES
    layers: tuple = DEFAULT_LAYERS
    activations: tuple = DEFAULT_ACTIVATIONS
    backends: tuple = DEFAULT_BACKENDS
    backends_explicit: bool = False
    peers: tuple = ()
    samples: int | None = None  # None: the whole training set
    repeats: int = DEFAULT_REPEATS
    max_seconds: float = DEFAULT_MAX_SECONDS
    threads: int | str = "auto"
    peer_threads: int | None = None  # None: the usable cores
    lr: float = 0.1
    seed: int = 0
    optimizer: Optimizer = field(default_factory=Optimizer)  # fastmlp's backends; the peers: plain SGD only

    def settings(self):
        return {
            "batch_sizes": list(self.batch_sizes),
            "layers": [list(sizes) for sizes in self.layers],
            "activations": list(self.activations),
            "backends": list(self.backends),
            "peers": list(self.peers),
            "samples": self.samples,
            "repeats": self.repeats,
            "max_seconds": self.max_seconds,
            "threads": self.threads,
            "peer_threads": self.peer_threads,
            "lr": self.lr,
            "seed": self.seed,
            "dtype": "float32",
            "loss": "softmax+cross_entropy",
            "optimizer": describe_optimizer(self.optimizer) + ", mean loss over each batch",
            "optimizer_options": self.optimizer.as_dict(),
        }


def describe_optimizer(optimizer: Optimizer) -> str:
    """"plain SGD (...)", "SGD, momentum 0.9 (Nesterov), weight decay 0.0001", "Adam (...)"."""
    if optimizer.is_plain:
        return "plain SGD (no momentum, no weight decay)"
    if optimizer.optimizer == "adam":
        parts = [f"Adam (beta1 {optimizer.beta1:g}, beta2 {optimizer.beta2:g}, eps {optimizer.eps:g})"]
    else:
        parts = ["SGD"]
        if optimizer.momentum:
            parts.append(f"momentum {optimizer.momentum:g}" + (" (Nesterov)" if optimizer.nesterov else ""))
    if optimizer.weight_decay:
        parts.append(f"{'decoupled ' if optimizer.decoupled_weight_decay else ''}weight decay {optimizer.weight_decay:g}")
    if optimizer.dropout:
        parts.append(f"dropout {optimizer.dropout:g}")
    if optimizer.input_dropout:
        parts.append(f"input dropout {optimizer.input_dropout:g}")
    return ", ".join(parts)


def _merged(lists):
    """[(1, 32), (32, 128)] (one tuple per repeated option) -> (1, 32, 128)."""
    return tuple(dict.fromkeys(item for values in lists for item in values))


def plan_from_args(args) -> Plan:
    """The Plan the parsed options ask for; options that do not fit together raise UsageError."""
    base = Plan(**QUICK) if getattr(args, "quick", False) else Plan()
    changes = {}
    if args.batch_sizes:
        changes["batch_sizes"] = _merged(args.batch_sizes)
    if args.layers:
        changes["layers"] = tuple(dict.fromkeys(args.layers))
    if args.activations:
        changes["activations"] = _merged(args.activations)
    if args.backends:
        chosen = _merged(args.backends)
        changes["backends"] = tuple(name for name in DEFAULT_BACKENDS if name in chosen)  # numpy first
        changes["backends_explicit"] = True
    if args.peers:
        changes["peers"] = tuple(args.peers)
    for name in ("samples", "repeats", "max_seconds", "threads", "peer_threads", "lr", "seed"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    try:
        changes["optimizer"] = Optimizer(**{name: getattr(args, name) for name in Optimizer.__dataclass_fields__})
    except (TypeError, ValueError) as error:
        raise UsageError(options.in_option_names(str(error), tuple(Optimizer.__dataclass_fields__))) from None
    chosen, default = changes["optimizer"], Optimizer()
    given = {name for name in Optimizer.__dataclass_fields__ if getattr(chosen, name) != getattr(default, name)}
    options.check_options_take_effect(chosen.as_dict(), given)
    plan = Plan(**{**base.__dict__, **changes})
    if plan.peers and not plan.optimizer.is_plain:
        default = Optimizer().as_dict()
        given = " ".join(f"--{name.replace('_', '-')} {value:g}" if not isinstance(value, (bool, str)) else
                         f"--{name.replace('_', '-')}" + ("" if isinstance(value, bool) else f" {value}")
                         for name, value in plan.optimizer.as_dict().items() if value != default[name])
        raise UsageError(
            f"{given}: the peers (--peers) train with plain SGD only, so the table would not compare like with "
            f"like; leave out --peers or the optimizer options"
        )
    for sizes in plan.layers:
        try:
            Architecture(sizes, plan.activations[0], "cross_entropy", dtype="float32")  # the network's own checks
        except ValueError as error:
            raise UsageError(f"--layers {','.join(map(str, sizes))}: {error}") from None
    if plan.samples is not None and max(plan.batch_sizes) > plan.samples:
        quick = getattr(args, "quick", False)  # the values --quick chose, where the user gave none
        sizes = (f"--quick's batch size {max(plan.batch_sizes)}" if quick and not args.batch_sizes
                 else f"--batch-sizes {max(plan.batch_sizes)}")
        samples = f"--quick's {plan.samples} samples" if quick and args.samples is None else f"--samples {plan.samples}"
        raise UsageError(f"{sizes} is larger than {samples}")
    return plan


def check_plot_path(path):
    """--plot where it cannot be written (a directory, a missing or read-only directory, another
    suffix: also refused by its parser) is a usage error before anything runs; without
    matplotlib, a clear one."""
    if not path:
        return
    problem = target_problem(path)
    if problem is not None:
        raise UsageError(f"--plot {path}: {problem[1]}")
    if os.path.splitext(path)[1].lower() not in FIGURE_SUFFIXES:
        raise UsageError(f"--plot {path}: must end in {' or '.join(FIGURE_SUFFIXES)} (the picture's file type)")
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise RuntimeError(f"--plot needs matplotlib, {which_is(error, 'matplotlib', 'plot')}") from None
