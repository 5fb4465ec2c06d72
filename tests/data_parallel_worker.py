"""Trains the examples on 4 host devices and on fewer; writes a JSON report.

Started by ``tests/test_data_parallel.py`` in a fresh process, because the
number of host devices is fixed when JAX starts (``XLA_FLAGS``). Every run on
several devices is compared with the same run on one device of this process;
``python -m tests.data_parallel_worker DIR`` keeps the work directories and
``report.json`` in DIR.
"""

import contextlib
import io
import json
import os
import pathlib
import shutil
import sys

if __name__ == "__main__":  # before JAX starts; an import (of LM, say) leaves JAX alone
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()

import jax
import numpy as np

from jaxrnn import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import adding  # noqa: E402
import char_lm  # noqa: E402
import classify  # noqa: E402
import forecast  # noqa: E402

#: The char LM run of the issue: 20 steps, a checkpoint at 10, 2 streams per device on 4.
LM = [
    "embed_size=8",
    "hidden_size=16",
    "seq_len=12",
    "batch_size=8",
    "steps=20",
    "eval_every=10",
    "log_every=5",
    "checkpoint_every=10",
    "sample_length=20",
]

OTHERS = {
    "adding": (
        adding,
        ["seq_len=8", "hidden_size=8", "batch_size=8", "steps=4", "eval_size=12"],
    ),
    "classify": (classify, ["hidden_size=8", "batch_size=16", "steps=4"]),
    "forecast": (forecast, ["hidden_size=8", "batch_size=16", "steps=4", "context=12"]),
}
SHORT = ["eval_every=4", "log_every=2", "checkpoint_every=4"]


def max_difference(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def records(workdir):
    """metrics.jsonl without the throughput, which depends on the clock."""
    found = train.read_metrics(pathlib.Path(workdir) / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k != "items_per_s"} for r in found]


def placement(tree):
    """``{"specs": sorted partition specs, "devices": devices per array}`` of a state part."""
    leaves = jax.tree.leaves(tree)
    return {
        "specs": sorted({str(leaf.sharding.spec) for leaf in leaves}),
        "devices": sorted({len(leaf.sharding.device_set) for leaf in leaves}),
    }


def lm_run(workdir, *overrides):
    """``(result, printed)`` of a char LM run."""
    config = train.load_config(char_lm.Config, char_lm.CONFIG, [*LM, *overrides])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = char_lm.train_and_evaluate(config, workdir)
    return result, out.getvalue()


def refused(argv, workdir):
    """``(exit status, stderr, whether the work directory exists)`` of a refused command."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = char_lm.main(argv)
        except SystemExit as exit:
            code = exit.code
    return {"code": code, "stderr": err.getvalue().strip(), "written": workdir.exists()}


def main(root: pathlib.Path):
    report = {"devices": jax.device_count()}

    # The char LM on all 4 devices (the default), and on one.
    four, printed = lm_run(root / "lm4")
    one, _ = lm_run(root / "lm1", "devices=1")
    report["lm"] = {
        "workdir": str(root / "lm4"),
        "records": {"4": records(root / "lm4"), "1": records(root / "lm1")},
        "state_difference": max_difference(four.state, one.state),
        "params": placement(four.state["params"]),
        "opt_state": placement(four.state["opt_state"]),
        "carry": placement(four.state["carry"]),
        "carry_on_one": placement(one.state["carry"]),
        "progress_lines": [line for line in printed.splitlines() if line.startswith("step 5/")],
    }

    # The checkpoint written at step 10 on 4 devices, resumed on 2 and on 1.
    report["resumed"] = {}
    for devices in (2, 1):
        workdir = root / f"resumed{devices}"
        shutil.copytree(root / "lm4", workdir)
        shutil.rmtree(workdir / "checkpoints" / "20")  # as if stopped at step 10
        resumed, printed = lm_run(workdir, f"devices={devices}")
        report["resumed"][str(devices)] = {
            "resumed_from": resumed.resumed_from,
            "records": records(workdir),
            "state_difference": max_difference(resumed.state, four.state),
            "carry": placement(resumed.state["carry"]),
            "params": placement(resumed.state["params"]),
        }

    # Refusals, before anything is written.
    report["refused"] = {
        name: refused(["--workdir", str(root / name), *LM, *overrides], root / name)
        for name, overrides in {
            "uneven": ["batch_size=6"],
            "uneven_on_two": ["batch_size=5", "devices=2"],
            "too_many": ["devices=5"],
        }.items()
    }

    # Sampling from the 4-device checkpoint runs on one device.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = char_lm.main(["sample", "--workdir", str(root / "lm4"), "--length", "10"])
    report["sample"] = {"code": code, "text": out.getvalue()}

    # The other examples: all devices by default. (Shardings never change what JAX
    # computes, only where: that the values stay the same is the char LM's check.)
    report["others"] = {}
    for name, (module, overrides) in OTHERS.items():
        workdir = root / name
        config = train.load_config(module.Config, module.CONFIG, [*overrides, *SHORT])
        with contextlib.redirect_stdout(io.StringIO()):
            if module is adding:  # one cell's training, without the figures
                result = adding.train_cell("lstm", config, workdir)
            else:
                result = module.train_and_evaluate(config, workdir)
        train_records = [r for r in records(workdir) if r["split"] == "train"]
        report["others"][name] = {
            "devices": sorted({r["devices"] for r in train_records}),
            "losses": [r["loss"] for r in train_records],
            "state": placement(result.state),
        }
    (root / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
