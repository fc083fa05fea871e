"""Subnormal numbers in training, and what flushing them to zero would change (session 62).

    python bench/experiments/subnormals.py [EPOCHS] [ROWS] [--flush]

784-300-10 relu, MSE on softmax outputs, batch 32, lr 0.2, momentum 0.9, cosine (the README's
accuracy row), one Numba thread, on ROWS MNIST rows (20,000 by default): prints each epoch's
seconds and, at the end, how many weights and velocities are subnormal (nonzero, below float32's
smallest normal). With ``--flush`` the calling thread's MXCSR gets FTZ and DAZ (x86 only) before
the fit, so that subnormal results are flushed to zero and subnormal inputs read as zero: the
kernels run on that thread with one Numba thread. Intel cores take a microcode assist for
arithmetic on subnormals (of the order of 100 cycles); AMD Zen cores take few or none.
"""
import sys

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

import fastmlp

FTZ_DAZ = 0x8040  # MXCSR bits 15 (flush to zero) and 6 (denormals are zero)


@intrinsic
def _set_mxcsr_bits(typingctx, bits):
    def codegen(context, builder, sig, args):
        slot = builder.alloca(ir.IntType(32))
        pointer = builder.bitcast(slot, ir.IntType(8).as_pointer())
        module = builder.module
        store = module.declare_intrinsic("llvm.x86.sse.stmxcsr", fnty=ir.FunctionType(ir.VoidType(), [pointer.type]))
        load = module.declare_intrinsic("llvm.x86.sse.ldmxcsr", fnty=ir.FunctionType(ir.VoidType(), [pointer.type]))
        builder.call(store, [pointer])
        old = builder.load(slot)
        builder.store(builder.or_(old, builder.trunc(args[0], ir.IntType(32))), slot)
        builder.call(load, [pointer])
        return builder.zext(old, ir.IntType(64))

    return types.int64(types.int64), codegen


@njit
def set_mxcsr_bits(bits):
    return _set_mxcsr_bits(bits)


def main():
    positional = [a for a in sys.argv[1:] if not a.startswith("--")]
    epochs = int(positional[0]) if positional else 3
    rows = int(positional[1]) if len(positional) > 1 else 20_000
    if "--flush" in sys.argv:
        print(f"MXCSR before: {set_mxcsr_bits(FTZ_DAZ):#x}")
    numba.set_num_threads(1)
    X, y, X_test, y_test = fastmlp.load_mnist()
    model = fastmlp.MLP([784, 300, 10], activation="relu", loss="mse", output="softmax", seed=0, threads=1)
    model.fit(X[:rows], y[:rows], epochs=epochs, batch_size=32, lr=0.2, momentum=0.9, lr_schedule="cosine",
              progress=False)
    tiny = np.finfo(np.float32).tiny
    subnormal = lambda a: int(((a != 0) & (np.abs(a) < tiny)).sum())  # noqa: E731
    print(f"{'flush' if '--flush' in sys.argv else 'as is'}: epochs {[round(s, 2) for s in model.history_.seconds]} s; "
          f"subnormal weights {subnormal(model.params_)}, velocities {subnormal(model.optimizer_state_.slots)} of "
          f"{model.params_.size}; test accuracy {model.score(X_test, y_test):.4f}")


if __name__ == "__main__":
    main()
