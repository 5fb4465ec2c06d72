"""Data-parallel training: the examples on 4 host devices, and in 2 processes of 2 devices.

Each multi-device run happens in a fresh process, since the host device count is
fixed when JAX starts: ``tests/data_parallel_worker.py`` (one process, 4 devices)
and the char LM's own command line (two processes joined by
``jax.distributed.initialize`` and CPU collectives over gloo). Each of them runs
once per test session, also under ``pytest -n``: the first test that needs it
starts it, and the others read its report.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxrnn import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import char_lm  # noqa: E402

from tests.data_parallel_worker import LM  # noqa: E402
from tests.helpers import once as _once  # noqa: E402

TOLERANCE = 1e-5


def _run_worker(directory):
    done = subprocess.run(
        [sys.executable, "-m", "tests.data_parallel_worker", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the 4-device worker failed:\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def report(tmp_path_factory):
    directory = _once(tmp_path_factory, "data-parallel", _run_worker)
    return json.loads((directory / "report.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}


def _run_two_processes(directory):
    """The char LM in 2 processes of 2 host devices: process 0 told by options, process 1
    by environment variables."""
    address = f"127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        # The test process's own flags (its compile options), and 2 host devices.
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, str(ROOT / "examples" / "char_lm.py")]
    command += ["--workdir", str(directory / "run"), *LM]
    options = ["--coordinator", address, "--num-processes", "2", "--process-id", "0"]
    variables = {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2"}
    processes = [
        subprocess.Popen([*command, *options], env=env, **PIPES),
        subprocess.Popen(command, env={**env, **variables, "JAX_PROCESS_ID": "1"}, **PIPES),
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=480)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    codes = [p.returncode for p in processes]
    report = {"codes": codes, "outputs": outputs}
    (directory / "report.json").write_text(json.dumps(report))


@pytest.fixture(scope="session")
def two_processes(tmp_path_factory):
    directory = _once(tmp_path_factory, "two-processes", _run_two_processes)
    return directory, json.loads((directory / "report.json").read_text())


def _without(records, *keys):
    return [{k: v for k, v in r.items() if k not in keys} for r in records]


def _assert_same_records(got, want):
    """The same records, values to TOLERANCE (the gradient is summed in another order)."""
    assert [(r["step"], r["split"], sorted(r)) for r in got] == [
        (r["step"], r["split"], sorted(r)) for r in want
    ]
    for a, b in zip(got, want, strict=True):
        for key, value in a.items():
            if isinstance(value, float):
                assert abs(value - b[key]) <= TOLERANCE, (a, b)
            else:
                assert value == b[key], (a, b)


def _max_difference(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# ---------------------------------------------------------------- one process, 4 devices


@pytest.mark.slow
def test_four_host_devices(report):
    assert report["devices"] == 4


@pytest.mark.slow
def test_the_char_lm_on_four_devices_equals_one_device(report):
    lm = report["lm"]
    four, one = lm["records"]["4"], lm["records"]["1"]
    assert {r["devices"] for r in four if r["split"] == "train"} == {4}
    assert {r["devices"] for r in one if r["split"] == "train"} == {1}
    assert [r["step"] for r in four if r["split"] == "train"] == [5, 10, 15, 20]
    _assert_same_records(_without(four, "devices"), _without(one, "devices"))
    assert lm["state_difference"] < TOLERANCE  # parameters, Adam moments, carried state


@pytest.mark.slow
def test_parameters_are_replicated_and_the_streams_split(report):
    lm = report["lm"]
    assert lm["params"] == {"specs": ["P()"], "devices": [4]}
    assert lm["opt_state"] == {"specs": ["P()"], "devices": [4]}
    assert lm["carry"] == {"specs": ["P('data', None)"], "devices": [4]}
    assert lm["carry_on_one"]["devices"] == [1]  # devices=1: no parallelism


@pytest.mark.slow
def test_the_progress_line_says_how_many_devices(report):
    (line,) = report["lm"]["progress_lines"]
    assert line.startswith("step 5/20  loss ") and line.endswith(" chars/s on 4 devices"), line


@pytest.mark.parametrize("devices", [2, 1])
@pytest.mark.slow
def test_a_checkpoint_from_four_devices_resumes_on_fewer_to_the_same_end(report, devices):
    resumed = report["resumed"][str(devices)]
    assert resumed["resumed_from"] == 10
    records = resumed["records"]
    on = {r["step"]: r["devices"] for r in records if r["split"] == "train"}
    assert on == {5: 4, 10: 4, 15: devices, 20: devices}
    _assert_same_records(
        _without(records, "devices"), _without(report["lm"]["records"]["4"], "devices")
    )
    assert resumed["state_difference"] < TOLERANCE
    assert resumed["carry"] == {"specs": ["P('data', None)"], "devices": [devices]}
    assert resumed["params"] == {"specs": ["P()"], "devices": [devices]}


@pytest.mark.parametrize(
    "case, message",
    [
        ("uneven", "batch_size: expected a multiple of 4, the number of devices each batch is"),
        ("uneven_on_two", "batch_size: expected a multiple of 2, the number of devices"),
        ("too_many", "devices: expected an int >= 1 and <= 4 (the devices of this process"),
    ],
)
@pytest.mark.slow
def test_a_batch_that_does_not_split_is_refused_before_anything_is_written(report, case, message):
    refused = report["refused"][case]
    assert refused["code"] == 2
    assert refused["stderr"].startswith(f"char_lm: ConfigError: {message}"), refused["stderr"]
    assert "\n" not in refused["stderr"] and not refused["written"]


@pytest.mark.slow
def test_sampling_from_a_four_device_checkpoint(report):
    sample = report["sample"]
    assert sample["code"] == 0 and sample["text"].startswith("The ")


@pytest.mark.parametrize("name", ["adding", "classify", "forecast"])
@pytest.mark.slow
def test_every_example_trains_on_all_devices_by_default(report, name):
    run = report["others"][name]
    assert run["devices"] == [4]
    assert run["state"] == {"specs": ["P()"], "devices": [4]}
    assert run["losses"] and all(np.isfinite(run["losses"]))


# ---------------------------------------------------------------- 2 processes, 2 devices each


@pytest.mark.slow
def test_two_processes_of_two_devices_equal_one_process_of_four(report, two_processes):
    directory, run = two_processes
    assert run["codes"] == [0, 0], "\n".join(o[-3000:] for o in run["outputs"])
    for output in run["outputs"]:  # each process shows the whole mesh
        assert "chars/s on 4 devices" in output and "Traceback" not in output
    workdir, reference = directory / "run", pathlib.Path(report["lm"]["workdir"])
    records = train.read_metrics(workdir / "metrics.jsonl")  # written once, by process 0
    _assert_same_records(
        _without(records, "items_per_s"), _without(report["lm"]["records"]["4"], "items_per_s")
    )
    assert (workdir / "samples.txt").read_text().count("--- step ") == 2
    params, _, _ = char_lm.load_trained(workdir)
    want, _, _ = char_lm.load_trained(reference)
    assert _max_difference(params, want) < TOLERANCE
    with train.Checkpoints(workdir / "checkpoints", read_only=True) as checkpoints:
        assert checkpoints.all_steps() == [10, 20]


# ---------------------------------------------------------------- the options, checked first


BAD_OPTIONS = [
    (
        ["--num-processes", "2", "--process-id", "2"],
        {},
        "--process-id: expected an int >= 0 and < 2, got 2",
    ),
    (["--num-processes", "two"], {}, "--num-processes: expected an int, got 'two'"),
    (["--num-processes", "0"], {}, "--num-processes: expected an int >= 1, got 0"),
    (
        ["--num-processes", "2"],
        {"JAX_PROCESS_ID": "x"},
        "--process-id (from $JAX_PROCESS_ID): expected an int, got 'x'",
    ),
    (
        ["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
        {},
        "--coordinator: expected HOST:PORT, got 'localhost'",
    ),
    (
        ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "1"],
        {},
        "--coordinator 127.0.0.1:1: jax.distributed.initialize could not start process 1 of 2 "
        "(RuntimeError: jax.distributed.initialize() must be called before any JAX calls",
    ),
]


@pytest.mark.parametrize("argv, variables, message", BAD_OPTIONS)
def test_bad_process_options_are_one_line_errors(
    tmp_path, capsys, monkeypatch, argv, variables, message
):
    jax.devices()  # JAX has started: a call of jax.distributed.initialize fails at once
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        char_lm.main(["--workdir", str(tmp_path / "run"), *argv, *LM])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"char_lm: ConfigError: {message}") and "\n" not in err, err
    assert not (tmp_path / "run").exists()
    assert not jax.distributed.is_initialized()
