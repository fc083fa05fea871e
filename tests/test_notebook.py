"""examples/quickstart.ipynb runs from top to bottom and shows what it promises."""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"
CELL_SECONDS = 300  # nbclient's limit for one cell (the training cell: about 3 s warm, 2026-12-02)
RUN_SECONDS = 900  # the whole run, kernel start and shutdown included, enforced from outside

# The notebook runs in a process of its own, never in the test session's: a Jupyter client's
# teardown can block for good (zmq's Context.term waiting on a socket, jupyter/jupyter_client#771,
# seen there in about 0.5% of runs), and in the suite's process that blocks the whole test run,
# which no timeout of nbclient's can end. Once the last cell has run, the runner writes the
# executed notebook (atomically), kills the kernel's process group (the kernel and any process it
# started) and leaves with os._exit, skipping the client's zmq teardown; it runs with its own
# Jupyter runtime directory, so no connection file is left in the user's.
RUNNER = r"""
import os, signal, sys
import nbformat
from nbclient import NotebookClient

source, executed, cell_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
notebook = nbformat.read(source, as_version=4)
client = NotebookClient(notebook, timeout=cell_seconds, kernel_name="python3",
                        resources={"metadata": {"path": os.path.dirname(source)}})
with client.setup_kernel():
    for index, cell in enumerate(notebook.cells):
        client.execute_cell(cell, index)  # raises CellExecutionError, naming the cell, if one fails
    nbformat.write(notebook, executed + ".part")
    os.replace(executed + ".part", executed)
    os.killpg(client.km.provisioner.pid, signal.SIGKILL)  # the kernel leads a session of its own
    client.km.cleanup_resources()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
"""


def needs(*modules):
    """Skip unless each of ``modules`` is installed (found, not imported: none of the Jupyter
    machinery is loaded into the test session's process)."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (the test extra has it)")


def test_the_committed_notebook_is_clean():
    """Outputs (large images) stay out of the repository: the notebook is committed unexecuted."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def run_notebook(source, executed, folder):
    """Execute ``source`` into ``executed`` in a runner process (RUNNER) that RUN_SECONDS bound;
    its output goes to a file in ``folder`` (a pipe would stay open as long as the kernel lives)."""
    log = folder / "runner.log"
    environment = {**os.environ, "JUPYTER_RUNTIME_DIR": str(folder / "jupyter-runtime")}
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-c", RUNNER, str(source), str(executed), str(CELL_SECONDS)],
                                   env=environment, cwd=folder, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the kernel then ends itself: it polls its parent
            process.wait()
            pytest.fail(f"the notebook did not finish in {RUN_SECONDS} s; its runner printed:\n"
                        + log.read_text()[-3000:])
    assert process.returncode == 0, f"the notebook runner failed:\n{log.read_text()[-3000:]}"


@pytest.mark.mnist
def test_quickstart_notebook_runs_and_draws_its_pictures(mnist, tmp_path):
    needs("nbformat", "nbclient", "matplotlib", "ipykernel")
    import nbformat

    shutil.copy(NOTEBOOK, tmp_path)  # run where it may write, away from the repository
    executed = tmp_path / "executed.ipynb"
    run_notebook(tmp_path / NOTEBOOK.name, executed, tmp_path)
    notebook = nbformat.read(executed, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", text).group(1))
    assert accuracy > 0.95  # 784-128-10, three per-sample epochs: about 0.97
    assert re.search(r"\d+ of 10,000 test digits misclassified", text)
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 3  # learning curves, confusion matrix, misclassified digits
