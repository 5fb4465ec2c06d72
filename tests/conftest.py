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


def pytest_collection_modifyitems(config, items):
    """The groups of tests that share one long worker process (``xdist_group``, which
    ``--dist loadgroup`` keeps on one xdist worker) start first, so that none of them
    is the last thing left running while the other worker idles."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
