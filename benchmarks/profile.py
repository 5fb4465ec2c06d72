"""Where the time of one jitted jaxrnn call goes, per XLA operation.

Run from the repository root::

    python -m benchmarks.profile --cell lstm --mode forward --shape 32,128,256
    python -m benchmarks.profile --cell lstm --mode forward --hoisted
    python -m benchmarks.profile --cell s6 --mode train --shape 1,16384,128 --gradient autodiff

It traces a few calls with ``jax.profiler`` and sums the duration of each XLA
operation in the trace, per call. ``--hoisted`` profiles the alternative that
``jaxrnn.scan`` does not use (the input projection of all steps as one matmul
before the loop), to show why. Any registered cell that takes feature vectors can
be profiled (with the options of ``benchmarks.peers`` and ``benchmarks.gated``);
``--gradient autodiff`` profiles ``lax.scan`` of the step instead of the cell's
scan rule, the sequential form the parallel rules are measured against.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax

import jaxrnn
from benchmarks import gated, peers


def hoisted_lstm(params, xs):
    """An LSTM with ``xs @ w_x`` for all steps before the loop (not what jaxrnn runs)."""
    gx = xs @ params.w_x + params.b

    def body(carry, g):
        i, f, c_hat, o = jnp.split(g + carry.h @ params.w_h, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(c_hat)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return jaxrnn.LSTMState(h=h, c=c), h

    carry = jaxrnn.initial_carry(params, xs.shape[1:-1])
    return lax.scan(body, carry, gx)[1]


def profile(fn, args, calls=5) -> list[tuple[str, float, int]]:
    """(operation, milliseconds per call, executions per call), longest first."""
    for _ in range(3):
        jax.block_until_ready(fn(*args))
    with tempfile.TemporaryDirectory() as logdir:
        with jax.profiler.trace(logdir):
            for _ in range(calls):
                jax.block_until_ready(fn(*args))
        (path,) = Path(logdir).rglob("*.trace.json.gz")
        events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        # Python frames start with "$"; the rest are XLA's runtime and its operations.
        if e.get("ph") == "X" and not e["name"].startswith("$"):
            total[e["name"]] += e["dur"]
            count[e["name"]] += 1
    return [(name, t / calls / 1e3, count[name] // calls) for name, t in total.most_common()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm", choices=jaxrnn.cell_names())
    parser.add_argument("--mode", default="forward", choices=peers.MODES)
    parser.add_argument("--shape", default="32,128,256", help="B,T,d (d = h)")
    parser.add_argument("--hoisted", action="store_true", help="the rejected LSTM variant")
    parser.add_argument(
        "--gradient", default="auto", choices=("auto", "autodiff"), help="as jaxrnn.scan takes it"
    )
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    B, T, d = (int(v) for v in args.shape.split(","))
    cell = jaxrnn.get_cell(args.cell)
    init, step = cell.init, cell.step
    options = {**peers.OPTIONS, **gated.CELLS}.get(args.cell, {})
    params = init(jax.random.key(0), d, d, **options)
    xs = jax.random.normal(jax.random.key(1), (T, B, d))
    if args.hoisted:
        if args.cell != "lstm":
            parser.error("--hoisted is an LSTM variant")
        forward = hoisted_lstm
    else:

        def forward(p, xs):
            return jaxrnn.scan(step, p, xs, gradient=args.gradient)[1]

    fn = forward if args.mode == "forward" else jax.grad(lambda p, xs: jnp.sum(forward(p, xs)))
    rows = profile(jax.jit(fn), (params, xs))
    variant = " hoisted" if args.hoisted else f" gradient={args.gradient}"
    print(f"{args.cell} {args.mode} B={B} T={T} d=h={d}{variant}")
    print(f"{'ms/call':>9} {'runs/call':>9}  operation")
    for name, ms, n in rows[: args.top]:
        print(f"{ms:9.2f} {n:9d}  {name}")
    return rows


if __name__ == "__main__":
    main()
