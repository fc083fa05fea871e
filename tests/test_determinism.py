"""Results that do not depend on where arrays happen to lie in memory.

LLVM vectorises a loop that writes one array while reading another behind a run-time check that
the two do not overlap; when the check fails (arrays close together) it runs a scalar copy of
the loop. If that loop also sums into a scalar, the two versions add in different orders and
round differently, so the result would depend on the addresses malloc chose: per call and,
in the threaded per-sample trainer, per thread (its two threads then drift apart). These
tests place the same inputs close together and far apart and ask for the same bits.
"""

import numpy as np
import pytest

from fastmlp import kernels

# Wide enough for several vectors of any x86 vector width plus a remainder.
WIDTHS = [10, 37, 64]
LOSS_CODES = {"softmax_cross_entropy": 0, "softmax_mse": 1, "identity_mse": 3}


def placements(rng, width, dtype):
    """The same logits z[1, width] with the output row p[1, width] and the gradient row dz[1,
    width] placed (a) right after z, one after the other in one buffer, and (b) each in an
    array of its own, far away."""
    z_values = rng.normal(0, 3, size=(1, width)).astype(dtype)
    packed = np.empty(3 * width, dtype)
    near_z, near_p, near_dz = (packed[k * width : (k + 1) * width].reshape(1, width) for k in range(3))
    near_z[...] = z_values
    far_z = z_values.copy()
    far_p = np.empty((1 << 16) + width, dtype)[-width:].reshape(1, width)
    far_dz = np.empty((1 << 17) + width, dtype)[-width:].reshape(1, width)
    return (near_z, near_p, near_dz), (far_z, far_p, far_dz)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("loss", list(LOSS_CODES))
def test_loss_kernels_give_the_same_bits_wherever_the_rows_lie(rng, loss, width, dtype):
    code = LOSS_CODES[loss]
    labels = np.array([width // 3], np.int64)
    targets = rng.normal(size=(1, width)).astype(dtype) if loss == "identity_mse" else np.empty((0, width), dtype)
    results = []
    for z, p, dz in placements(rng, width, dtype):
        losses, correct = np.empty(1, dtype), np.empty(1, np.int64)
        kernels.loss_forward(losses, correct, p, z, labels, targets, code)
        # backward reads p and writes dz: right after p, or far from it (it was np.empty_like(p)
        # in both, as the comment here claimed otherwise: audit 32)
        kernels.loss_backward(dz, p, labels, targets, code)
        results.append((losses.copy(), p.copy(), dz.copy()))
    (near_loss, near_p, near_dz), (far_loss, far_p, far_dz) = results
    np.testing.assert_array_equal(near_p, far_p)
    np.testing.assert_array_equal(near_loss, far_loss)
    np.testing.assert_array_equal(near_dz, far_dz)
