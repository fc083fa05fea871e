"""What the ``fastmlp`` commands share about options: exit codes, one-line usage errors,
argparse ``type=`` parsers that turn down a malformed or out-of-range value at parse time, and
the strict JSON every ``--json`` prints.

``fastmlp.cli`` and ``fastmlp.bench`` both import this module and neither imports the other's
option code. A parser here raises ``argparse.ArgumentTypeError`` with a message that starts
with what the value must be; argparse puts ``argument --option:`` in front of it, and
``Parser.error`` makes the whole thing one ``UsageError`` line, so every bad value names its
option and ends with exit status ``EXIT_USAGE`` before any data is loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re

from ._atomic import target_problem

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: stdout's reader went away (| head), as for a C program

LIST_SEPARATOR = ","


class UsageError(ValueError):
    """A mistake on the command line; the commands print it as one line and exit with EXIT_USAGE."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and a non-zero exit), not a usage block, and a
    value that starts with a negative number (``--batch-sizes -1,32``, ``--layers -784,10``) is a
    value that its option's parser turns down by name, not a flag ("expected one argument")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d[\d.,eE+-]*$")

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def integer(minimum=1):
    """A parser of whole numbers >= ``minimum``."""
    bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text):
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {bound}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {bound}; got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def threads(text):
    """``auto`` or a positive integer (the ``threads`` of MLP)."""
    if text.strip() == "auto":
        return "auto"
    try:
        return integer(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a positive integer; got {text!r}") from None


def number(*, allow_zero=False):
    """A parser of finite numbers > 0 (>= 0 with ``allow_zero``); NaN and infinity are refused."""
    bound = "a finite number >= 0" if allow_zero else "a finite number > 0"

    def parse(text):
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {bound}; got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be {bound}; got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def interval(low, high, *, low_open=False, high_open=True):
    """A parser of finite numbers in [low, high) (or the interval the flags say)."""
    bound = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text):
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {bound}; got {text!r}") from None
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"must be {bound}; got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def choice(allowed):
    """A parser that accepts exactly one of the names in ``allowed``."""
    allowed = tuple(allowed)

    def parse(text):
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown value {text!r}; choose from {', '.join(allowed)}")
        return text

    parse.__name__ = "choice"
    parse.allowed = allowed  # (read by the tests of --help)
    return parse


def split_items(text, separator=LIST_SEPARATOR, example="1,32,128"):
    """``'1, 32'`` -> ``['1', '32']``; an empty item (``'1,,32'``, ``'1,32,'``, ``''``) is an
    error rather than something to drop, since it usually means a value went missing."""
    items = [item.strip() for item in text.split(separator)]
    if not any(items):
        raise argparse.ArgumentTypeError(f"needs at least one value, like {example}; got {text!r}")
    if not all(items):
        raise argparse.ArgumentTypeError(f"has an empty item in {text!r}; separate values with single commas, like {example}")
    return items


def item_list(parse_item, example):
    """A parser of comma lists whose items each go through ``parse_item``; returns a tuple
    without repeats, in the order given."""

    def parse(text):
        return tuple(dict.fromkeys(parse_item(item) for item in split_items(text, example=example)))

    parse.__name__ = "list"
    return parse


def layer_sizes(text):
    """``'784,128,10'`` (or ``'784-128-10'``) -> ``(784, 128, 10)``: at least two sizes >= 1."""
    # Without commas, "784-128-10" splits on dashes; with commas only commas separate, so
    # "784,-5,10" reads as a negative size (and is refused as one).
    dashed = LIST_SEPARATOR not in text and "-" in text.strip().lstrip("-")
    example = "784,128,10"
    items = split_items(text, "-" if dashed else LIST_SEPARATOR, example=example)
    try:
        sizes = tuple(int(item) for item in items)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers like {example}; got {text!r}") from None
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(f"needs at least an input and an output size, like {example}; got {text!r}")
    for position, size in enumerate(sizes):
        if size < 1:
            raise argparse.ArgumentTypeError(f"every size must be a positive integer; size {position + 1} of {text!r} is {size}")
    return sizes


def path(text):
    """A file or directory name; an empty one would quietly mean the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"needs a file or directory name; got {text!r}")
    return text


def existing_file(text):
    """The name of a file that exists (a checkpoint to resume, say)."""
    path(text)
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; expected a file")
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def new_file(suffixes):
    """A parser of names of files to write: ending in one of ``suffixes`` (the file type), in a
    directory that exists and that this user may write to, so a long run never ends unable
    to write its result."""
    suffixes = tuple(suffixes)

    def parse(text):
        path(text)
        if os.path.splitext(text)[1].lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"must end in {' or '.join(suffixes)} (the file type); got {text!r}")
        problem = target_problem(text)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem[1])
        return text

    parse.__name__ = "file name"
    return parse


FULL_BATCH = ("full", "all")


def batch_size(text):
    """A positive batch size, or None for ``'full'`` (full-batch gradient descent)."""
    if text.strip().lower() in FULL_BATCH:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'full'; got {text!r}")
    return value


def add_optimizer_options(parser):
    """The update rule, weight decay and dropout (``fastmlp.optim``), with ``MLP.fit``'s defaults:
    shared by ``train``, ``compare`` and ``bench``."""
    from .optim import OPTIMIZERS

    group = parser.add_argument_group("optimizer")
    add = group.add_argument
    fraction = interval(0, 1)
    add("--optimizer", type=choice(OPTIMIZERS), default="sgd", metavar="|".join(OPTIMIZERS), help=f"{', '.join(OPTIMIZERS)} (default sgd)")
    add("--momentum", type=fraction, default=0.0, metavar="MU", help="SGD momentum in [0, 1) (default 0)")
    add("--nesterov", action="store_true", help="Nesterov momentum (needs --momentum)")
    add("--beta1", type=fraction, default=0.9, metavar="B1", help="Adam's first-moment decay in [0, 1) (default 0.9)")
    add("--beta2", type=fraction, default=0.999, metavar="B2", help="Adam's second-moment decay in [0, 1) (default 0.999)")
    add("--eps", type=number(), default=1e-8, metavar="EPS", help="Adam's epsilon (default 1e-8)")
    add("--weight-decay", type=number(allow_zero=True), default=0.0, metavar="LAMBDA", help="L2 weight decay on weights, not biases (default 0)")
    add("--decoupled-weight-decay", action="store_true", help="decay the weights apart from the gradient (AdamW, SGDW)")
    add("--dropout", type=fraction, default=0.0, metavar="RATE", help="dropout of hidden units in [0, 1) (default 0)")
    add("--input-dropout", type=fraction, default=0.0, metavar="RATE", help="dropout of inputs in [0, 1) (default 0)")


# Training options that only take effect with a setting of another: name -> (that setting, its
# values), in the API's names. ``options_without_effect`` is the one rule built on it: ``fit``
# warns of such an option, a sweep refuses one that no trial uses, and the command line refuses
# it (train, compare, bench) in its own words (``check_options_take_effect``).
TAKES_EFFECT_WITH = {
    "beta1": ("optimizer", ("adam",)), "beta2": ("optimizer", ("adam",)), "eps": ("optimizer", ("adam",)),
    "power_t": ("lr_schedule", ("invscaling",)), "lr_decay": ("lr_schedule", ("exponential", "step")),
    "lr_step_epochs": ("lr_schedule", ("step",)), "n_iter_no_change": ("lr_schedule", ("adaptive",)),
}
# every option the rule looks at, in the order they are named (the command line refuses the first)
_WITHOUT_EFFECT_ORDER = (*TAKES_EFFECT_WITH, "decoupled_weight_decay", "tol")


def options_without_effect(setting, given):
    """{name: why} for the training options named in ``given`` that ``setting`` (the training
    options by their API names: optimizer, weight_decay, lr_schedule and early_stopping at least,
    as far as ``given`` needs them) leaves without effect: beta1 with SGD, power_t without
    invscaling, a decoupled decay of 0, tol with neither the adaptive schedule nor early stopping."""
    found = {}
    for name in _WITHOUT_EFFECT_ORDER:
        if name not in given:
            continue
        if name in TAKES_EFFECT_WITH:
            other, values = TAKES_EFFECT_WITH[name]
            if setting[other] not in values:
                found[name] = f"it applies to {other}={' or '.join(map(repr, values))}; got {other}={setting[other]!r}"
        elif name == "decoupled_weight_decay":
            if setting[name] and not setting["weight_decay"] > 0:
                found[name] = "it needs a weight_decay above 0"
        elif setting["lr_schedule"] != "adaptive" and setting["early_stopping"] is None:  # tol
            found[name] = (f"it applies to lr_schedule='adaptive' and to early_stopping; got "
                           f"lr_schedule={setting['lr_schedule']!r} without early_stopping")
    return found


def check_options_take_effect(setting, given, stopping=True):
    """UsageError for the first option (an argparse dest in ``given``) that ``options_without_effect``
    finds ``setting`` leaves without effect, as --momentum with Adam is: the run would train as if
    it were not there (train, compare, bench). ``stopping``: whether the command has
    --early-stopping (compare has no validation split). The command line refuses such an option
    given at all (``--beta1 0.9`` with SGD); ``fit`` warns of one set away from its default only
    (code that passes every option, a default among them, trains as asked)."""
    for name in options_without_effect(setting, given):
        option = "--" + name.replace("_", "-")
        if name == "decoupled_weight_decay":
            raise UsageError("--decoupled-weight-decay needs a --weight-decay above 0 (default 0)")
        if name == "tol":
            raise UsageError(f"--tol applies to --lr-schedule adaptive{' and to --early-stopping' if stopping else ''}; "
                             f"got --lr-schedule {setting['lr_schedule']}{' without --early-stopping' if stopping else ''}")
        if name == "n_iter_no_change":
            raise UsageError("--n-iter-no-change is the adaptive schedule's patience"
                             + (" (early stopping's is --early-stopping N)" if stopping else "")
                             + f"; got --lr-schedule {setting['lr_schedule']}")
        other, values = TAKES_EFFECT_WITH[name]
        if other == "optimizer":
            raise UsageError(f"{option} applies to --optimizer adam (SGD's is --momentum); got --optimizer {setting[other]}")
        raise UsageError(f"{option} applies to --lr-schedule {' and '.join(values)}; got --lr-schedule {setting[other]}")


def strict_json(value):
    """JSON text of ``value`` for ``--json``, with every non-finite number as null (a diverged
    model's loss of inf, an R^2 of -inf): strict JSON has no NaN or Infinity, and jq or a
    browser's JSON.parse refuse the tokens Python's json module writes for them."""
    def finite(item):
        if isinstance(item, float) and not math.isfinite(item):  # NumPy's float64 is a float too
            return None
        if isinstance(item, dict):
            return {key: finite(entry) for key, entry in item.items()}
        if isinstance(item, (list, tuple)):
            return [finite(entry) for entry in item]
        return item

    return json.dumps(finite(value), allow_nan=False)


def in_option_names(message, names):
    """``message`` (an API error) with each ``name=value`` whose name is in ``names`` (argparse
    dests) as the command line writes it: ``nesterov=True`` as ``--nesterov``, ``momentum=0`` as
    ``--momentum 0``, ``optimizer='sgd'`` as ``--optimizer sgd``; and such a name that starts the
    message as its option."""
    def option(match):
        name, value = match.group(1), match.group(2).strip("'\"")
        if name not in names:
            return match.group(0)
        flag = "--" + name.replace("_", "-")
        return flag if value == "True" else f"{flag} {value}"

    message = re.sub(r"\b([a-z][a-z0-9_]*)=('[^']*'|\"[^\"]*\"|[^\s;,)]+)", option, message)
    # and a message that starts with one ("lr_decay must be in (0, 1]")
    first = re.match(r"([a-z][a-z0-9_]*) ", message)
    if first and first.group(1) in names:
        message = "--" + first.group(1).replace("_", "-") + message[len(first.group(1)):]
    return message
