"""A Jupyter kernel restarted while a cold fit's second process still compiles: does that
process finish and store the kernel? (README, "Performance".)

    NUMBA_CACHE_DIR=$(mktemp -d) python bench/experiments/jupyter_restart.py

Starts a kernel with jupyter_client, runs a cold one-epoch batch-32 fit in it (3,000 random
images), restarts the kernel as JupyterLab's "Restart kernel" does (``restart_kernel(now=False)``:
a shutdown request, then a kill if the kernel has not exited within Jupyter's wait), and lists
the ``fastmlp._prewarm`` processes every 2 s until none is left. Then a new process fits on the
same cache and prints its JIT seconds: a few hundredths when the kernel was stored.
"""
import subprocess
import sys
import time

from jupyter_client import KernelManager
km = KernelManager(kernel_name="python3"); km.start_kernel()
kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
code = "import numpy as np, fastmlp\nX = np.random.default_rng(0).integers(0, 256, (3000, 784), dtype=np.uint8)\ny = np.arange(3000) % 10\nh = fastmlp.MLP([784, 32, 10]).fit(X, y, epochs=1, batch_size=32, progress=False)\nprint('done')"
kc.execute_interactive(code, timeout=300)
t = time.time()
km.restart_kernel(now=False)
print("restarted in", round(time.time() - t, 1), "s")
for i in range(30):
    ps = subprocess.run(["pgrep", "-f", "fastmlp._prewarm"], capture_output=True, text=True).stdout.split()
    print(round(time.time() - t, 1), "prewarm:", ps)
    if not ps: break
    time.sleep(2)
kc.stop_channels(); km.shutdown_kernel(now=True)
check = ("import numpy as np, fastmlp\nX = np.random.default_rng(0).integers(0, 256, (3000, 784), dtype=np.uint8)\n"
         "m = fastmlp.MLP([784, 32, 10]); m.fit(X, np.arange(3000) % 10, epochs=1, batch_size=32, progress=False)\n"
         "print('a new process on the same cache: JIT', round(m.compile_seconds_, 2), 's')")
subprocess.run([sys.executable, "-c", check], check=True)
