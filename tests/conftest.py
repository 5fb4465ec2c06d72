import os

# The suite compiles far more than it runs: thousands of small programs, each run a
# few times. LLVM's optimisations are most of XLA:CPU's compile time and change no
# result a test compares (every side of a comparison is compiled alike), so the tests
# (and the processes they start, which inherit this) compile without them. A flag the
# caller set wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import jax
import pytest

# Silent broadcasting between arrays of different rank is a bug in this code base.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# Worker scripts that run in their own process with several host devices: importing
# one here (as --doctest-modules would) would change this process's device count.
collect_ignore = ["sharding_worker.py", "data_parallel_worker.py"]


#: Test modules whose tests read the report of one long worker process (several host
#: devices), which runs once per session (``tests.helpers.once``).
WORKER_MODULES = ("test_data_parallel.py", "test_sharding.py")


def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n N``, each worker-process module starts another xdist worker's
    first batch, so the worker processes run side by side from the start instead of one
    xdist worker waiting for the other's (or being the last thing left running).

    pytest-xdist's load scheduling hands each of its N workers a first batch of
    ``len(items) // N // 4`` consecutive tests; the order here only decides which
    tests come first, never whether they run.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    groups = [[i for i in items if i.path.name == name] for name in WORKER_MODULES]
    rest = [i for i in items if i.path.name not in WORKER_MODULES]
    batch = max(len(items) // workers // 4, 2)
    ordered = []
    for k, group in enumerate(groups):
        if k < workers:
            ordered += group
            take = max(batch * (k + 1) - len(ordered), 0)
            ordered += rest[:take]
            rest = rest[take:]
        else:
            ordered += group
    items[:] = ordered + rest
