"""The bounds-checked pass of .ci/run (NUMBA_BOUNDSCHECK=1) really checks bounds.

Skipped in the ordinary run, where kernels are compiled without bounds checks for speed.
"""

import numba
import numpy as np
import pytest

from fastmlp import kernels
from fastmlp.kernels.vectors import vload_part, vstore_part

pytestmark = pytest.mark.skipif(
    not numba.config.BOUNDSCHECK or numba.config.DISABLE_JIT,
    reason="only meaningful in the NUMBA_BOUNDSCHECK=1 pass of .ci/run (compiled, bounds-checked)",
)


def test_an_input_index_past_the_weights_is_an_index_error():
    W = np.zeros((4, 3), np.float32)  # 4 inputs
    b = np.zeros(3, np.float32)
    indptr = np.array([0, 2], np.int64)
    indices = np.array([1, 4], np.int32)  # input 4 does not exist
    values = np.array([1, 1], np.uint8)
    out = np.empty((1, 3), np.float32)
    with pytest.raises(IndexError):
        kernels.sparse_linear_forward(out, np.array([0], np.int64), indptr, indices, values, 1.0, W, b, 0)


@numba.njit
def _masked_copy(out, a, i, m):
    vstore_part(out, 0, vload_part(a, i, m), m)


def test_a_masked_vector_move_past_the_row_is_an_index_error():
    a = np.arange(10, dtype=np.float64)
    out = np.zeros(8)
    _masked_copy(out, a, 5, 5)  # a[5:10]: inside
    np.testing.assert_array_equal(out[:5], a[5:])
    with pytest.raises(IndexError):
        _masked_copy(out, a, 5, 6)  # a[5:11]: one past the end
    with pytest.raises(IndexError):
        _masked_copy(out, a, -1, 2)  # a[-1]: before the start (no wrap-around in kernels)
