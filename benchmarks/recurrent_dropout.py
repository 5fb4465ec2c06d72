"""Training a stack with recurrent dropout costs about what it costs without.

``python -m benchmarks.recurrent_dropout`` times one training step (forward and
the gradient of all parameters) of a 2-layer bidirectional LSTM stack through
:func:`jaxrnn.stack_scan`, with ``recurrent_dropout=0.25`` and with ``0.0``
under the same key, in interleaved rounds (medians), and prints the ratio.
With the mask passed to the cell's fused gradient as an input, the ratio
should stay near 1 (the target is at most 1.1).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import jaxrnn
from benchmarks.timing import interleaved


def training_step(rate, layers, xs, key):
    def loss(layers):
        _, ys = jaxrnn.stack_scan(
            jaxrnn.lstm_step, layers, xs, dropout=0.0, recurrent_dropout=rate, key=key
        )
        return jnp.sum(ys)

    return jax.jit(jax.grad(loss))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32,128,256", help="B,T,h (d = h)")
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args(argv)
    B, T, h = (int(n) for n in args.shape.split(","))
    layers = jaxrnn.stack_init(
        jax.random.key(0), jaxrnn.lstm_init, h, h, num_layers=2, bidirectional=True
    )
    xs = jax.random.normal(jax.random.key(1), (T, B, h))
    key = jax.random.key(2)
    runs = {}
    for name, rate in (("plain", 0.0), ("recurrent_dropout", args.rate)):
        step = training_step(rate, layers, xs, key)
        start = time.perf_counter()
        jax.block_until_ready(step(layers))
        print(f"{name}: first call (compile) {time.perf_counter() - start:.2f} s")
        runs[name] = lambda step=step: jax.block_until_ready(step(layers))
    timing = interleaved(runs, args.rounds, args.min_time)
    ratio = timing["recurrent_dropout"]["median_s"] / timing["plain"]["median_s"]
    for name, t in timing.items():
        print(f"{name}: {t['median_s'] * 1e3:.1f} ms (median of {args.rounds} rounds)")
    print(f"time ratio recurrent_dropout={args.rate} / 0.0 at B,T,h={args.shape}: {ratio:.3f}")
    return {"timing": timing, "ratio": ratio}


if __name__ == "__main__":
    main()
