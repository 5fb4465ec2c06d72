"""Training time of each LSTM variant against the plain LSTM; writes RESULTS_variants.md.

Run from the repository root::

    python -m benchmarks.variants                       # B=32, T=128, d=h=256
    python -m benchmarks.variants --shape 8,32,64 --rounds 3

Each case is one training step, ``jax.grad`` of ``sum(ys)`` of ``jaxrnn.scan``
with respect to all parameters, under ``jax.jit``: with the cell's fused
gradient (the default) and with ``gradient="autodiff"`` (JAX differentiating
the step). As in ``benchmarks.run``, every case is compiled and warmed up, then
all run in interleaved rounds and the median per call is reported, so the
ratios come from one run on one machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks.timing import interleaved, machine, threads

HERE = Path(__file__).resolve().parent

# name -> (cell, init options); sizes that depend on h are filled in by `options`.
VARIANTS = {
    "lstm": ("lstm", {}),
    "proj": ("lstm", {"proj_size": "h/2"}),
    "peephole": ("lstm", {"peephole": True}),
    "layer_norm": ("lstm", {"layer_norm": True}),
    "coupled": ("lstm", {"coupled": True}),
    "cell_clip": ("lstm", {"cell_clip": 3.0}),
    "all": (
        "lstm",
        {
            "proj_size": "h/2",
            "peephole": True,
            "layer_norm": True,
            "coupled": True,
            "cell_clip": 3.0,
        },
    ),
    "gru": ("gru", {"reset_after": True}),
    "gru_layer_norm": ("gru", {"reset_after": True, "layer_norm": True}),
}


def options(name, h):
    cell, given = VARIANTS[name]
    return cell, {k: h // 2 if v == "h/2" else v for k, v in given.items()}


def training_step(name, B, T, d, h, gradient):
    """``(run, compile_s)``: one jitted training step of the variant, and its compile time."""
    cell, opts = options(name, h)
    cell = jaxrnn.get_cell(cell)
    params = cell.init(jax.random.key(0), d, h, **opts)
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((T, B, d), dtype=np.float32))

    def loss(params, xs):
        return jnp.sum(jaxrnn.scan(cell.step, params, xs, gradient=gradient)[1])

    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    compile_s = time.perf_counter() - start
    return (lambda: jax.block_until_ready(compiled(params, xs))), compile_s


def measure(names, shape, rounds, min_time, autodiff=True):
    B, T, d = shape
    runs, compile_s = {}, {}
    for name in names:
        for gradient in ("auto", "autodiff") if autodiff else ("auto",):
            key = (name, gradient)
            runs[key], compile_s[key] = training_step(name, B, T, d, d, gradient)
    timing = interleaved(runs, rounds, min_time)
    return {key: {**t, "compile_s": compile_s[key]} for key, t in timing.items()}


def markdown(results, names, shape, rounds, autodiff=True) -> str:
    m = machine()
    B, T, d = shape
    base = {cell: results[(cell, "auto")]["median_s"] for cell in ("lstm", "gru") if cell in names}
    lines = [
        "# LSTM variants: training time",
        "",
        "Written by `python -m benchmarks.variants`. One training step (forward, then the"
        " gradient of `sum(ys)` with respect to all parameters) of `jaxrnn.scan` under"
        f" `jax.jit`, B={B}, T={T}, d=h={d} (projections to h/2), float32;"
        f" {rounds} interleaved rounds after warm-up, median per call.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores; XLA's CPU client uses {threads()}"
        f" threads; JAX devices: {', '.join(m['jax_devices'])}",
        f"- Versions: jax {m['versions']['jax']}, jaxlib {m['versions']['jaxlib']}",
        f"- Date: {m['date']}",
        "",
        "`vs plain` is the variant's time over the plain cell's (LSTM, or the reset-after GRU"
        " for the GRU rows): above 1 the variant is slower. `fused speed-up` is the time with"
        ' `gradient="autodiff"` over the time with the fused gradient (the default).',
        "",
    ]
    header = "| variant | options | ms | vs plain | compile s |"
    rule = "|---|---|---|---|---|"
    if autodiff:
        header += " autodiff ms | fused speed-up |"
        rule += "---|---|"
    lines += [header, rule]
    for name in names:
        cell, opts = options(name, d)
        fused = results[(name, "auto")]
        shown = ", ".join(f"{k}={v}" for k, v in opts.items()) or "—"
        ratio = fused["median_s"] / base[cell] if cell in base else float("nan")
        row = (
            f"| {name} | {shown} | {1e3 * fused['median_s']:.1f} | {ratio:.2f}x |"
            f" {fused['compile_s']:.1f} |"
        )
        if autodiff:
            plain = results[(name, "autodiff")]
            row += (
                f" {1e3 * plain['median_s']:.1f} | {plain['median_s'] / fused['median_s']:.2f}x |"
            )
        lines.append(row)
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32,128,256", help="B,T,d (d = h)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per sample")
    parser.add_argument("--no-autodiff", action="store_true", help="time the fused gradient only")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS_variants.md")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    names = list(dict.fromkeys(args.variants))
    autodiff = not args.no_autodiff
    results = measure(names, shape, args.rounds, args.min_time, autodiff)
    text = markdown(results, names, shape, args.rounds, autodiff)
    args.out.write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
