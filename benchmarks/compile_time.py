"""Compile times: what users meet first, in notebooks and short runs.

Run from the repository root::

    python -m benchmarks.compile_time     # prints the table; benchmarks.run writes it too

Each JAX program is traced, lowered and compiled ``--repeats`` times from
scratch (``jax.clear_caches()`` before each), and the median is reported: the
time from calling a jitted function with new shapes to its first result,
less the run itself. Beside jaxrnn: Flax Linen's counterpart where one exists
(``nn.RNN`` over a cell, ``Bidirectional(RNN)`` stacks), and PyTorch's first
call (a fresh process builds the module, then times its first call: the kernel
setup a user waits for). The programs:

- the LSTM, GRU and RNN scans, forward and training, at the standard shape
  ``B=32, T=128, d=h=256`` (``benchmarks.peers``);
- the two-layer bidirectional LSTM and GRU stacks with lengths, forward and
  training (``benchmarks.stacks``);
- the char LM's training step (``benchmarks.char_lm_e2e``, ``h=256``);
- a minGRU training step at ``B=1, T=16384, d=h=128``, its parallel rule
  beside its sequential ``lax.scan``: no Flax counterpart exists.

Target: no jaxrnn program compiles more than 1.5x slower than its Flax counterpart.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

import jaxrnn
from benchmarks import char_lm_e2e, peers, stacks
from benchmarks.timing import HERE, threads

TARGET_VS_FLAX = 1.5  # jaxrnn's compile time at most this times Flax's
STANDARD = (32, 128, 256)  # (B, T, d = h)
LONG = (1, 16384, 128)  # the minGRU's
FLAX_CELL = {"lstm": "lstm_optimized", "gru": "gru", "rnn": "rnn"}


def median_compile(case: peers.Case, repeats: int) -> float:
    """Median seconds to trace, lower and compile ``case``'s program from scratch."""
    times = []
    for _ in range(repeats):
        jax.clear_caches()
        start = time.perf_counter()
        case.compile()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_first_call(builder: str, *args, torch_threads: int | None = None) -> float | None:
    """Seconds of the first call of a PyTorch case built in a fresh process.

    ``builder`` names a function ``module.name(*args) -> run`` (a ``peers.Case``
    or a bare function) in ``benchmarks``; the process imports torch and builds
    the case first, untimed.
    """
    module, name = builder.rsplit(".", 1)
    code = (
        "import sys, time, torch\n"
        f"torch.set_num_threads({torch_threads or threads()})\n"
        f"from benchmarks import {module}\n"
        f"case = {module}.{name}(*{args!r})\n"
        "run = getattr(case, 'run', case)\n"
        "start = time.perf_counter(); run(); print(time.perf_counter() - start)\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        print(f"PyTorch first call of {builder}{args}: failed ({e})", file=sys.stderr)
        return None
    return float(out.stdout.split()[-1])


def _row(program, jaxrnn_s, flax_s=None, other=None, torch_s=None) -> dict:
    row = {
        "program": program,
        "jaxrnn_s": jaxrnn_s,
        "flax_s": flax_s,
        "torch_first_call_s": torch_s,
    }
    if other is not None:
        row["other"] = other  # (label, seconds) of a non-Flax comparison
    row["vs_flax"] = jaxrnn_s / flax_s if flax_s else None
    row["met"] = None if flax_s is None else row["vs_flax"] <= TARGET_VS_FLAX
    return row


def measure(
    repeats=3,
    *,
    shape=STANDARD,
    long_shape=LONG,
    char_lm_hidden=256,
    cells=tuple(FLAX_CELL),
    stack_cells=stacks.CELLS,
    torch=True,
    torch_threads=None,
) -> list[dict]:
    """Every program's compile time (printed as it goes).

    ``shape`` is the scans' and stacks' ``(B, T, d = h)``, ``long_shape`` the minGRU's;
    ``cells`` and ``stack_cells`` choose the scans and stacks.
    """
    rows = []

    def add(row):
        rows.append(row)
        print(line(row), flush=True)

    B, T, d = shape
    size = (B, T, d, d)
    pairs = [  # (program, jaxrnn's case, Flax's case, PyTorch's builder and its arguments)
        (
            f"{cell} scan, {mode}, B={B} T={T} h={d}",
            lambda cell=cell, mode=mode: peers.jaxrnn_case(cell, mode, *size),
            lambda cell=cell, mode=mode: peers.flax_case(FLAX_CELL[cell], mode, *size),
            ("peers.torch_case", cell, mode, *size),
        )
        for cell in cells
        for mode in peers.MODES
    ]
    pairs += [
        (
            f"2-layer bidirectional {cell} stack with lengths, {mode}, B={B} T={T} h={d}",
            lambda cell=cell, mode=mode: stacks.jaxrnn_case(cell, mode, *size),
            lambda cell=cell, mode=mode: stacks.flax_case(cell, mode, *size),
            ("stacks.torch_case", cell, mode, *size),
        )
        for cell in stack_cells
        for mode in peers.MODES
    ]
    for program, ours, flax, (builder, *args) in pairs:
        first = torch_first_call(builder, *args, torch_threads=torch_threads) if torch else None
        ours, flax = median_compile(ours(), repeats), median_compile(flax(), repeats)
        add(_row(program, ours, flax, torch_s=first))
    config = char_lm_e2e.config_of(char_lm_hidden)
    ours = median_compile(char_lm_e2e.jaxrnn_step(config), repeats)
    first = (
        torch_first_call("char_lm_e2e._torch_step_of", char_lm_hidden, torch_threads=torch_threads)
        if torch
        else None
    )
    program = f"char LM training step, B={config.batch_size} T={config.seq_len} h={char_lm_hidden}"
    add(_row(program, ours, torch_s=first))
    B, T, d = long_shape
    parallel = median_compile(mingru_case(B, T, d, "auto"), repeats)
    sequential = median_compile(mingru_case(B, T, d, "autodiff"), repeats)
    add(
        _row(
            f"minGRU training step, B={B} T={T} h={d}",
            parallel,
            other=("its sequential lax.scan", sequential),
        )
    )
    return rows


def mingru_case(B, T, d, gradient) -> peers.Case:
    params = jaxrnn.mingru_init(jax.random.key(0), d, d)
    xs = jnp.asarray(peers.inputs(T, B, d))
    forward = lambda p, xs: jaxrnn.scan(jaxrnn.mingru_step, p, xs, gradient=gradient)[1]
    return peers.jax_case(forward, params, xs, "train")


def _s(x):
    return f"{x:.2f}" if x is not None else "—"


def line(row) -> str:
    other = f", {row['other'][0]} {_s(row['other'][1])} s" if "other" in row else ""
    ratio = f" ({row['vs_flax']:.2f}x Flax)" if row["vs_flax"] is not None else ""
    return (
        f"compile {row['program']}: jaxrnn {_s(row['jaxrnn_s'])} s{ratio}, Flax "
        f"{_s(row['flax_s'])} s, PyTorch first call {_s(row['torch_first_call_s'])} s{other}"
    )


def markdown(rows, repeats) -> list[str]:
    """The table's lines, for ``RESULTS.md``."""
    lines = [
        "## Compile time: seconds from a jitted call with new shapes to its program",
        "",
        f"Trace, lower and compile, median of {repeats} from scratch (`jax.clear_caches()`);"
        " PyTorch's first call of a module built in a fresh process. Target: jaxrnn at most"
        f" {TARGET_VS_FLAX}x Flax's compile time (`python -m benchmarks.compile_time`).",
        "",
        "| program | jaxrnn | Flax | jaxrnn / Flax | PyTorch first call | other |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "—" if r["vs_flax"] is None else f"{r['vs_flax']:.2f}x"
        if r["met"] is False:
            ratio = f"**{ratio}**"
        other = f"{r['other'][0]}: {_s(r['other'][1])}" if "other" in r else ""
        lines.append(
            f"| {r['program']} | {_s(r['jaxrnn_s'])} | {_s(r['flax_s'])} | {ratio} |"
            f" {_s(r['torch_first_call_s'])} | {other} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch's first calls")
    parser.add_argument("--torch-threads", type=int, default=None)
    args = parser.parse_args(argv)
    rows = measure(args.repeats, torch=not args.no_torch, torch_threads=args.torch_threads)
    print("\n".join(markdown(rows, args.repeats)))
    return rows


if __name__ == "__main__":
    main()
