"""Shared fixtures and the per-dtype tolerances every comparison uses."""

import os
from pathlib import Path

import numpy as np
import pytest

# Reference-vs-kernel tolerances, defined once. float64: the two compute the same sums in a
# different order, so agreement is to a few ulps times the depth of the sums (~1e-13), and 1e-9
# leaves room for 20 steps of error growth. float32: one ulp is 6e-8; 20 SGD steps through
# sums of up to 784 terms amplify rounding differences to ~1e-5 relative at worst.
TOLERANCES = {
    np.float64: {"rtol": 1e-9, "atol": 1e-12},
    np.float32: {"rtol": 1e-4, "atol": 1e-6},
}


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype).type]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def mnist_dir():
    """FASTMLP_DATA if it holds MNIST; None otherwise."""
    path = os.environ.get("FASTMLP_DATA")
    if not path:
        return None
    names = ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")
    return path if any((Path(path) / name).exists() for name in names) else None


@pytest.fixture(scope="session")
def mnist():
    """(X_train, y_train, X_test, y_test) from FASTMLP_DATA, or a visible skip."""
    path = mnist_dir()
    if path is None:
        pytest.skip("full MNIST not found: set FASTMLP_DATA to a directory with the four MNIST files")
    import fastmlp

    return fastmlp.load_mnist(path)


def make_blobs(rng, n_samples, n_features, n_classes, dtype=np.float32):
    """Separable synthetic classes: Gaussian clouds around random centres."""
    centres = rng.normal(0, 3, size=(n_classes, n_features))
    labels = rng.integers(0, n_classes, size=n_samples)
    X = centres[labels] + rng.normal(0, 1, size=(n_samples, n_features))
    return X.astype(dtype), labels.astype(np.int64)


def make_digits(rng, n_samples, n_classes=10, side=28):
    """uint8 'images', ~80% zero pixels, whose class is a bright bar at a class-specific place."""
    labels = rng.integers(0, n_classes, size=n_samples)
    images = np.zeros((n_samples, side, side), dtype=np.uint8)
    noise = rng.random((n_samples, side, side)) < 0.1
    images[noise] = rng.integers(1, 120, size=int(noise.sum()), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 2 * int(label)
        images[i, row : row + 2, 4:24] = rng.integers(180, 256, size=(2, 20), dtype=np.uint8)
    return images.reshape(n_samples, -1), labels.astype(np.int64)


@pytest.fixture
def synth():
    """Synthetic data makers and the tolerance table, for tests (conftest is not importable)."""
    from types import SimpleNamespace

    return SimpleNamespace(blobs=make_blobs, digits=make_digits, tolerance=tolerance, write_idx=write_idx)


def write_idx(path, array, magic):
    """Write ``array`` (uint8) as an IDX file with ``magic`` (2051 images, 2049 labels); gzipped
    when ``path`` ends in .gz."""
    import gzip
    import struct

    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.asarray(array).astype(np.uint8).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    Path(path).write_bytes(data)


@pytest.fixture
def tiny_mnist_dir(tmp_path, rng):
    """A directory with a 300/100-sample synthetic dataset in the MNIST IDX layout (gzipped)."""
    X, y = make_digits(rng, 400)
    directory = tmp_path / "tiny-mnist"
    directory.mkdir()
    write_idx(directory / "train-images-idx3-ubyte.gz", X[:300].reshape(-1, 28, 28), 2051)
    write_idx(directory / "train-labels-idx1-ubyte.gz", y[:300], 2049)
    write_idx(directory / "t10k-images-idx3-ubyte.gz", X[300:].reshape(-1, 28, 28), 2051)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", y[300:], 2049)
    return directory
