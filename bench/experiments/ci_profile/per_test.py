"""pytest plugin (``-p per_test``, with this folder on PYTHONPATH): each test's wall time and the
pytest process's own CPU time during it (children excluded), into CIPROF_DIR/tests.json."""

import json
import os
import resource
import time

import pytest

_per_test = {}


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu(), time.perf_counter()
    yield
    _per_test[item.nodeid] = (time.perf_counter() - wall, _cpu() - cpu)


def pytest_sessionfinish(session, exitstatus):
    with open(os.path.join(os.environ["CIPROF_DIR"], "tests.json"), "w") as out:
        json.dump(_per_test, out)
