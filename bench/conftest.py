"""Benchmark fixtures: MNIST through the library's loader, a seeded rng, a results table."""

import os

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist_train():
    """The 60,000 MNIST training images (uint8) and labels, or a visible skip."""
    import fastmlp

    try:
        X, y, _, _ = fastmlp.load_mnist(os.environ.get("FASTMLP_DATA"), download=False)
    except fastmlp.DataNotFoundError as error:
        pytest.skip(f"benchmarks need MNIST: {error}")
    return X, y


@pytest.fixture
def rng():
    return np.random.default_rng(0)


