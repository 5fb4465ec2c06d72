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
