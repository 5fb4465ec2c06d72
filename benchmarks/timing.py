"""What every benchmark script shares: the machine, and interleaved timing of implementations.

A single time on a shared machine means little; the scripts time every
implementation in rounds, rotating the order, and report medians.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

import jax

HERE = Path(__file__).resolve().parent


def threads() -> int:
    """The number of cores this process may use: XLA's CPU client sizes its pool by it."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "jaxrnn", "torch", "flax", "dm-haiku", "equinox", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": cpu,
        "cores": threads(),
        "system": f"{platform.system()} {platform.release()}",
        "jax_devices": [str(d) for d in jax.devices()],
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _time_calls(run, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        run()
    return (time.perf_counter() - start) / reps


def interleaved(runs: dict, rounds: int, min_time: float) -> dict:
    """Median seconds per call of each ``runs[name]()``, timed in interleaved rounds."""
    reps = {}
    for name, run in runs.items():  # warm-up, and enough calls per sample to be measurable
        run()
        once = _time_calls(run, 1)
        reps[name] = max(1, int(min_time / max(once, 1e-9)))
    samples = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        # Rotate the start so that no implementation always runs right after the same one.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(_time_calls(runs[name], reps[name]))
    return {
        name: {"median_s": statistics.median(s), "samples_s": s, "reps": reps[name]}
        for name, s in samples.items()
    }


def add_torch_threads(parser):
    """The ``--torch-threads`` option of every script that times PyTorch."""
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="PyTorch's threads (default: as many as XLA's CPU client uses); on a loaded"
        " machine its spinning OpenMP threads can be far slower than one",
    )
