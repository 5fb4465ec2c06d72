"""The core on 4 host devices with the batch sharded: same values, batch stays sharded.

The worker (``tests/sharding_worker.py``) runs in its own process, since the
host device count is fixed when JAX starts.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import once

# Each reads the report of one worker process, which runs once per session: the full
# suite only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run_worker(directory):
    result = subprocess.run(
        [sys.executable, "-m", "tests.sharding_worker"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the 4-device worker failed:\n{result.stderr[-3000:]}")
    (directory / "report.json").write_text(result.stdout)


@pytest.fixture(scope="session")
def report(tmp_path_factory):
    directory = once(tmp_path_factory, "sharding", _run_worker)
    return json.loads((directory / "report.json").read_text())


def test_four_devices(report):
    assert report["devices"] == 4


@pytest.mark.parametrize("case", ["scan_rnn", "scan_lstm", "scan_gru", "stack"])
def test_outputs_keep_the_batch_sharding_and_equal_the_unsharded_run(report, case):
    r = report[case]
    assert r["ys_spec"] == "P(None, 'data')"  # time-major (T, B, h): batch on the devices
    assert all(spec == "P('data',)" for spec in r.get("carry_specs", []))
    assert r["value_diff"] < 1e-5
    assert r["grad_diff"] < 1e-4


@pytest.mark.parametrize("case", ["scan_rnn", "scan_lstm", "scan_gru", "stack"])
def test_weight_gradients_are_reduced_not_gathered(report, case):
    counts = report[case]["grad_collectives"]
    assert counts["all-gather"] == 0, counts
    assert counts["all-to-all"] == 0, counts
    assert counts["all-reduce"] >= 1, counts


@pytest.mark.parametrize("family", ["nnx", "linen"])
def test_modules_keep_the_batch_sharding(report, family):
    assert report[family]["ys_spec"] == "P('data',)"  # batch-major (B, T, h)
    assert report[family]["value_diff"] < 1e-5


TIME_CASES = [f"{cell}_reverse={r}" for cell in ("mingru", "minlstm") for r in (False, True)]


@pytest.mark.parametrize("case", TIME_CASES)
def test_a_time_sharded_linear_recurrence_equals_the_unsharded_scan(report, case):
    # T=512 over 4 devices, with an initial carry, lengths (one ending on device 1,
    # one 0) and resets: values and gradients of params, xs and the carry.
    r = report["time"][case]
    assert r["ys_spec"] == "P('time',)"
    assert r["value_diff"] < 1e-5
    assert r["grad_diff"] < 1e-5


@pytest.mark.parametrize("case", TIME_CASES)
def test_time_sharding_communicates_only_each_slices_map(report, case):
    # What crosses devices is each slice's map (A, B), two (batch, h) = (3, 5)
    # arrays from each of 4 devices, never a slice of the sequence.
    r = report["time"][case]
    assert 0 < r["largest_gather"] <= 2 * 4 * 3 * 5, r
    assert r["collectives"]["all-to-all"] == 0
    assert r["collectives"]["collective-permute"] == 0


EXPLICIT = ["stack", "initial_carry", "nnx", "linen"]


@pytest.mark.parametrize("case", EXPLICIT)
def test_an_explicit_mesh_keeps_the_batch_sharding_and_equals_the_unsharded_run(report, case):
    # jax.make_mesh's axes are Explicit: sharding is part of each array's type.
    assert report["explicit"]["axis_types"] == "(Explicit,)"
    r = report["explicit"][case]
    batch_major = case in ("nnx", "linen")
    assert r["ys_spec"] == ("P('data', None, None)" if batch_major else "P(None, 'data', None)")
    assert all(spec.startswith("P('data'") for spec in r["carry_specs"]), r
    assert r["value_diff"] < 1e-5
    assert r["grad_diff"] < 1e-4
    counts = r["grad_collectives"]
    assert counts["all-gather"] == counts["all-to-all"] == counts["collective-permute"] == 0
    assert counts["all-reduce"] >= 1  # the weight gradients, summed over the devices


def test_every_registered_cell_runs_under_an_explicit_mesh(report):
    # Lengths and resets, forward and gradient, each cell with the batch split in four.
    from tests.helpers import CASES

    for name in {case.cell for case in CASES.values()}:
        r = report["explicit"][name]
        assert r["ys_spec"].startswith("P(None, 'data'"), (name, r)
        assert all(spec.startswith("P('data'") for spec in r["carry_specs"]), (name, r)
        assert r["value_diff"] < 1e-5, (name, r)
        assert r["grad_diff"] < 1e-4, (name, r)
        counts = r["grad_collectives"]
        assert counts["all-gather"] == counts["all-to-all"] == 0, (name, counts)


def test_the_readme_block_on_time_sharding_runs_on_four_devices(report):
    assert report["readme_time_sharding"] == "ran"
