"""The data every row of a bench run trains and is tested on: MNIST, sliced to ``--samples``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass
class Split:
    """Images (uint8 [N, 784]), labels (int64 [N]) and, made once on demand, images / 255."""

    pixels: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    @cached_property
    def scaled(self):
        """float32 [N, 784] in [0, 1], what the peers train on."""
        return self.pixels.astype(np.float32) / np.float32(255)

    def head(self, n):
        """The first n samples (views), keeping images / 255 if already made."""
        if n == len(self):
            return self
        part = Split(self.pixels[:n], self.labels[:n])
        if "scaled" in self.__dict__:
            part.scaled = self.scaled[:n]
        return part


def load_splits(plan, data_dir, samples_explicit):
    """(plan, train Split, test Split): MNIST sliced to the plan's samples, checked against its
    layers and batch sizes. ``samples_explicit``: --samples was given (not --quick's default)."""
    from ..data import load_mnist

    X_train, y_train, X_test, y_test = load_mnist(data_dir)
    if plan.samples is not None and plan.samples > len(y_train):
        if samples_explicit:
            raise ValueError(f"--samples {plan.samples} is more than the {len(y_train):,} training samples")
        plan = dataclasses.replace(plan, samples=len(y_train))  # --quick's slice on a smaller dataset
    n_features, n_classes = X_train.shape[1], int(max(y_train.max(), y_test.max())) + 1
    for sizes in plan.layers:
        if sizes[0] != n_features or sizes[-1] != n_classes:
            raise ValueError(
                f"--layers {','.join(map(str, sizes))}: the data has {n_features} inputs and {n_classes} classes, "
                f"so the first size must be {n_features} and the last {n_classes}"
            )
    if max(plan.batch_sizes) > len(y_train):
        raise ValueError(f"--batch-sizes {max(plan.batch_sizes)} is larger than the {len(y_train):,} training samples")
    return plan, Split(X_train, y_train).head(plan.samples or len(y_train)), Split(X_test, y_test)
