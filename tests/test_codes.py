"""The activation and loss codes and the parameter layout have one definition (kernels/codes.py),
which fastmlp.network and the kernels share."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import kernels, network
from fastmlp.kernels import codes

CODE_NAMES = (
    "IDENTITY", "SIGMOID", "TANH", "RELU", "ACTIVATIONS",
    "SOFTMAX_CROSS_ENTROPY", "SOFTMAX_MSE", "SIGMOID_BCE", "IDENTITY_MSE", "LOSSES",
    "parameter_layout",
)


def test_network_and_kernels_hold_the_same_code_maps():
    assert network.ACTIVATIONS is codes.ACTIVATIONS is kernels.ACTIVATIONS
    assert network.LOSSES is codes.LOSSES is kernels.LOSSES
    assert (network.SOFTMAX_CROSS_ENTROPY, network.SOFTMAX_MSE, network.SIGMOID_BCE, network.IDENTITY_MSE) == (
        codes.SOFTMAX_CROSS_ENTROPY, codes.SOFTMAX_MSE, codes.SIGMOID_BCE, codes.IDENTITY_MSE)
    assert [codes.ACTIVATIONS[name] for name in ("identity", "sigmoid", "tanh", "relu")] == [
        codes.IDENTITY, codes.SIGMOID, codes.TANH, codes.RELU]
    assert sorted(codes.ACTIVATIONS.values()) == [0, 1, 2, 3]
    assert sorted(codes.LOSSES.values()) == [0, 1, 2, 3]


def _definitions(path):
    """Names a module assigns or defines (functions, classes), at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            for leaf in ast.walk(target) if isinstance(target, ast.AST) else ():
                if isinstance(leaf, ast.Name) and isinstance(leaf.ctx, ast.Store):
                    names.add(leaf.id)
    return names


def test_codes_and_layout_are_defined_only_in_kernels_codes():
    sources = sorted(Path(kernels.__file__).parent.glob("*.py")) + sorted(Path(fastmlp.__file__).parent.glob("*.py"))
    assert Path(codes.__file__) in sources and Path(network.__file__) in sources
    redefined = {
        path.name: sorted(_definitions(path) & set(CODE_NAMES))
        for path in sources
        if path != Path(codes.__file__)
    }
    assert {name: found for name, found in redefined.items() if found} == {}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pair", list(network.LOSSES), ids="+".join)
def test_kernels_read_each_loss_code_as_its_name_says(pair, dtype):
    output, _ = pair
    K = 1 if output == "sigmoid" else 4
    z = np.linspace(-2, 3, 3 * K).reshape(3, K).astype(dtype)
    labels = np.array([0, 1, 0], np.int64)
    targets = np.zeros((3, K), dtype)
    if K == 1:
        targets[:, 0] = labels  # (a binary label, read either way)
    p, losses, correct = np.empty_like(z), np.empty(3, dtype), np.empty(3, np.int64)
    kernels.loss_forward(losses, correct, p, z, labels, targets, network.LOSSES[pair])
    expected = {
        "softmax": np.exp(z) / np.exp(z).sum(axis=1, keepdims=True),
        "sigmoid": 1 / (1 + np.exp(-z)),
        "identity": z,
    }[output]
    np.testing.assert_allclose(p, expected, rtol=1e-5)
    # and the loss by its name: the output alone leaves softmax + cross-entropy and softmax + MSE
    # apart by nothing (with their codes swapped, the check above passed: audit 32)
    one_hot = np.eye(K, dtype=np.float64)[labels] if K > 1 else targets.astype(np.float64)
    want = {
        ("softmax", "cross_entropy"): lambda: -np.log((expected * one_hot).sum(axis=1)),
        ("softmax", "mse"): lambda: 0.5 * ((expected - one_hot) ** 2).sum(axis=1),
        ("sigmoid", "binary_cross_entropy"): lambda: -(one_hot * np.log(expected)
                                                       + (1 - one_hot) * np.log(1 - expected)).sum(axis=1),
        ("identity", "mse"): lambda: 0.5 * (z.astype(np.float64) ** 2).sum(axis=1),
    }[pair]()
    np.testing.assert_allclose(losses, want, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layers", [(3, 4, 2), (784, 128, 10), (5, 1), (6, 7, 8, 9)])
def test_layout_is_parameter_layout(layers, bias):
    layout = network.Architecture(layers, loss="mse", bias=bias).layout()
    w_offsets, b_offsets, n_params = kernels.parameter_layout(layers, bias)
    np.testing.assert_array_equal(layout.sizes, layers)
    np.testing.assert_array_equal(layout.w_offsets, w_offsets)
    np.testing.assert_array_equal(layout.b_offsets, b_offsets)
    assert layout.n_params == n_params
    assert w_offsets.dtype == b_offsets.dtype == layout.sizes.dtype == np.int64


def test_parameter_layout_order_is_w0_b0_w1_b1():
    w_offsets, b_offsets, n_params = codes.parameter_layout([3, 4, 2])
    assert (w_offsets.tolist(), b_offsets.tolist(), n_params) == ([0, 16], [12, 24], 26)
    w_offsets, b_offsets, n_params = codes.parameter_layout([3, 4, 2], use_bias=False)
    assert (w_offsets.tolist(), b_offsets.tolist(), n_params) == ([0, 12], [-1, -1], 20)


def test_numpy_backend_does_not_import_numba(tmp_path):
    """The codes come from fastmlp.kernels, whose compiled modules import Numba (~0.5 s): the
    NumPy backend must get the codes without them."""
    script = (
        "import sys, numpy as np, fastmlp\n"
        "model = fastmlp.MLP([4, 3, 2], backend='numpy', seed=0)\n"
        "model.fit(np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1]), epochs=1, progress=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
