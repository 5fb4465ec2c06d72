"""minGRU and minLSTM trained in parallel, against their sequential loop and jaxrnn's LSTM.

Run from the repository root::

    python -m benchmarks.parallel            # writes benchmarks/RESULTS_parallel.md and .json
    python -m benchmarks.parallel --quick    # the two target shapes only, 3 rounds
    python -m benchmarks.parallel --only-gated  # the RG-LRU, Hawk, LRU, S6 and RecurrentGemma
                                                # tables alone (benchmarks/RESULTS_gated.md)

The gated linear recurrences are timed at the two target shapes (S6 with N = 16),
each against its sequential scan, the LSTM and (the RG-LRU) RecurrentGemma's
own layer: see ``benchmarks/gated.py``.

Every figure is a training step (forward, then the gradient of a loss over all
outputs with respect to all parameters, as in ``benchmarks/run.py``), timed in
interleaved rounds in one process, median per call; ratios come from one run.
Per shape ``(B, T, d = h)``:

- ``parallel``: ``jaxrnn.scan(jaxrnn.mingru_step, ...)``, the cell's scan rule
  (one matmul for all steps, the blocked associative scan, its own gradient);
- ``associative``: the same coefficients through a plain
  ``lax.associative_scan`` of all ``T`` pairs, differentiated by JAX (the
  form measured before this rule);
- ``sequential``: ``jaxrnn.scan(..., gradient="autodiff")``, ``lax.scan`` of the
  step, differentiated by JAX;
- ``lstm``: jaxrnn's LSTM of the same size (its fused gradient);
- ``projection``: the input projection alone, ``xs @ w_x + b`` and its weight
  gradient, which every form computes: ``sequential / projection`` bounds what
  any parallel form can gain.

Two more tables justify the rule's choices: the scan's accuracy and speed in
linear and in log space, and its block length.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxrnn
from benchmarks import gated
from benchmarks.timing import HERE, interleaved, machine, threads
from jaxrnn.rules import input_projection, linear_scan

# (B, T, d = h); the first two are the targets.
SHAPES = [(1, 16384, 128), (16, 4096, 256), (16, 256, 256), (16, 1024, 256), (16, 16384, 256)]
TARGETS = {  # shape -> (vs sequential, vs LSTM)
    (1, 16384, 128): (3.0, 6.0),
    (16, 4096, 256): (1.5, 3.0),
}
BLOCKS = (1, 4, 8, 16, 32, 64, 128)


def _inputs(T, B, d, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((T, B, d), dtype=np.float32))


def _weights(shape, seed=1):
    """Fixed loss weights: a loss ``sum(w * ys)`` is not simplified away by XLA as ``sum(ys)``
    can be (the projection's weight gradient would become a column sum)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def _compiled(loss, params, xs):
    compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    return lambda: jax.block_until_ready(compiled(params, xs))


def plain_associative(cell):
    """The cell's coefficients through one ``lax.associative_scan`` of all pairs, autodiff."""

    def run(params, xs):
        a, b = cell(params, xs)
        return lax.associative_scan(lambda e, n: (n[0] * e[0], n[0] * e[1] + n[1]), (a, b))[1]

    return run


def with_block(name, block):
    """``jaxrnn.scan`` of the cell, its rule run with another block length."""
    rule = dataclasses.replace(jaxrnn.get_cell(name).scan_rule, block=block)

    def run(params, xs):
        h0 = jaxrnn.initial_carry(params, xs.shape[1:-1])
        return rule(params, h0, h0, xs, None, None, reverse=False, unroll=1, options={})[1]

    return run


def training_runs(B, T, d, *, minlstm):
    """name -> zero-argument callable running one training step at this shape."""
    xs, w = _inputs(T, B, d), _weights((T, B, d))
    runs = {}
    cells = ["mingru", "minlstm"] if minlstm else ["mingru"]
    for name in cells:
        cell = jaxrnn.get_cell(name)
        params = cell.init(jax.random.key(0), d, d)
        coefficients = cell.scan_rule.coefficients
        forms = {
            "parallel": lambda p, xs, s=cell.step: jaxrnn.scan(s, p, xs)[1],
            "associative": plain_associative(coefficients),
            "sequential": lambda p, xs, s=cell.step: jaxrnn.scan(s, p, xs, gradient="autodiff")[1],
        }
        for form, run in forms.items():
            runs[f"{name} {form}"] = _compiled(
                lambda p, xs, f=run: jnp.sum(w * f(p, xs)), params, xs
            )
    lstm = jaxrnn.lstm_init(jax.random.key(0), d, d)
    runs["lstm"] = _compiled(
        lambda p, xs: jnp.sum(w * jaxrnn.scan(jaxrnn.lstm_step, p, xs)[1]), lstm, xs
    )
    params = jaxrnn.mingru_init(jax.random.key(0), d, d)
    w2 = _weights((T, B, 2 * d))
    runs["projection"] = _compiled(
        lambda p, xs: jnp.sum(w2 * jnp.concatenate(input_projection(xs, p.w_x, p.b, 2), -1)),
        params,
        xs,
    )
    return runs


def training_case(shape, args, *, minlstm=None):
    """Every form's training step at ``shape``, timed (minLSTM too at the targets' shapes)."""
    B, T, d = shape
    runs = training_runs(B, T, d, minlstm=shape in TARGETS if minlstm is None else minlstm)
    timing = interleaved(runs, args.rounds, args.min_time)
    ms = {name: 1e3 * t["median_s"] for name, t in timing.items()}
    par, seq = ms["mingru parallel"], ms["mingru sequential"]
    out = {
        "B": B,
        "T": T,
        "d": d,
        "h": d,
        "ms": ms,
        "vs_sequential": seq / par,
        "vs_lstm": ms["lstm"] / par,
        "associative_vs_sequential": seq / ms["mingru associative"],
        "bound": seq / ms["projection"],
        "projection_share": ms["projection"] / par,
    }
    if "minlstm parallel" in ms:
        out["minlstm_vs_sequential"] = ms["minlstm sequential"] / ms["minlstm parallel"]
    return out


def block_case(shape, args):
    """Training time of the minGRU rule for each block length."""
    B, T, d = shape
    xs, w = _inputs(T, B, d), _weights((T, B, d))
    params = jaxrnn.mingru_init(jax.random.key(0), d, d)
    runs = {}
    for block in BLOCKS:
        run = with_block("mingru", block)
        runs[block] = _compiled(lambda p, xs, f=run: jnp.sum(w * f(p, xs)), params, xs)
    timing = interleaved(runs, args.rounds, args.min_time)
    return {"B": B, "T": T, "d": d, "ms": {b: 1e3 * t["median_s"] for b, t in timing.items()}}


# Linear space against log space --------------------------------------------------------


def log_pairs(log_a, log_b):
    """Feng et al.'s log-space scan as pairs: ``(la1 + la2, logaddexp(la2 + lb1, lb2))``."""

    def combine(earlier, later):
        return earlier[0] + later[0], jnp.logaddexp(later[0] + earlier[1], later[1])

    return jnp.exp(lax.associative_scan(combine, (log_a, log_b))[1])


def log_cumsum(log_a, log_b):
    """Heinsen (2023): ``H_t = exp(a*_t + logcumsumexp(log b - a*)_t)``, ``a* = cumsum(log a)``."""
    a_star = jnp.cumsum(log_a, axis=0)
    return jnp.exp(a_star + lax.cumlogsumexp(log_b - a_star, axis=0))


def accuracy_case(args, T=16384, B=1, h=128):
    """Each scan form on minGRU's coefficients (zero carry, as log space needs), against
    the loop in float64: largest relative error, and time of forward plus gradient."""
    params = jaxrnn.mingru_init(jax.random.key(0), h, h)
    xs = _inputs(T, B, h)
    a, b = jax.jit(jaxrnn.get_cell("mingru").scan_rule.coefficients)(params, xs)
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda v: np.asarray(v, np.float64), (a, b))
        body = lambda h, ab: (ab[0] * h + ab[1],) * 2
        want = np.asarray(
            jax.jit(lambda a, b: lax.scan(body, jnp.zeros_like(a[0]), (a, b))[1])(*wide)
        )
    zero = jnp.zeros_like(a[0])
    forms = {
        "linear, blocked (jaxrnn)": (lambda a, b: linear_scan(a, b, zero), (a, b)),
        "linear, plain associative scan": (lambda a, b: linear_scan(a, b, zero, block=1), (a, b)),
        "log space, pairs (logaddexp)": (log_pairs, (jnp.log(a), jnp.log(b))),
        "log space, cumulative sums (Heinsen)": (log_cumsum, (jnp.log(a), jnp.log(b))),
        "sequential lax.scan": (
            lambda a, b: lax.scan(body, jnp.zeros_like(a[0]), (a, b))[1],
            (a, b),
        ),
    }
    weights = _weights(a.shape)
    rows, runs = {}, {}
    for name, (f, inputs) in forms.items():
        got = np.asarray(jax.jit(f)(*inputs), np.float64)
        rows[name] = {"max_rel_error": float(np.max(np.abs(got - want) / np.abs(want)))}
        grad = jax.jit(jax.grad(lambda *v, f=f: jnp.sum(weights * f(*v)), (0, 1)))
        compiled = grad.lower(*inputs).compile()
        runs[name] = lambda c=compiled, v=inputs: jax.block_until_ready(c(*v))
    timing = interleaved(runs, args.rounds, args.min_time)
    for name, t in timing.items():
        rows[name]["ms"] = 1e3 * t["median_s"]
    return {"T": T, "B": B, "h": h, "forms": rows}


# Output ---------------------------------------------------------------------------------


def markdown(results) -> str:
    m = results["machine"]
    lines = [
        "# minGRU and minLSTM in parallel: results",
        "",
        "Written by `python -m benchmarks.parallel`; see its docstring for what each row runs.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['system']}; JAX devices:"
        f" {', '.join(m['jax_devices'])}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- Date: {m['date']}; {results['rounds']} interleaved rounds per table after warm-up,"
        " median per call, float32",
        "",
        "## Training: milliseconds per step, and speed ratios",
        "",
        "Ratios are the other's time divided by the parallel minGRU's (above 1: the parallel"
        " form is faster). *Bound*: sequential / projection, the most any form that still"
        " computes the projection can gain.",
        "",
        "| B | T | h | parallel | associative | sequential | LSTM | projection |"
        " vs sequential | vs LSTM | plain assoc. vs seq. | bound | projection share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["training"]:
        ms = r["ms"]
        lines.append(
            f"| {r['B']} | {r['T']} | {r['h']} | {ms['mingru parallel']:.1f} |"
            f" {ms['mingru associative']:.1f} | {ms['mingru sequential']:.1f} | {ms['lstm']:.1f} |"
            f" {ms['projection']:.1f} | **{r['vs_sequential']:.2f}x** | **{r['vs_lstm']:.2f}x** |"
            f" {r['associative_vs_sequential']:.2f}x | {r['bound']:.2f}x |"
            f" {100 * r['projection_share']:.0f}% |"
        )
    minlstm = [r for r in results["training"] if "minlstm_vs_sequential" in r]
    if minlstm:
        lines += [
            "",
            "minLSTM, same shapes (ms: parallel / plain associative / sequential):",
            "",
            "| B | T | h | parallel | associative | sequential | vs sequential |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in minlstm:
            ms = r["ms"]
            lines.append(
                f"| {r['B']} | {r['T']} | {r['h']} | {ms['minlstm parallel']:.1f} |"
                f" {ms['minlstm associative']:.1f} | {ms['minlstm sequential']:.1f} |"
                f" {r['minlstm_vs_sequential']:.2f}x |"
            )
    lines += ["", "## Targets", "", "| shape | target | measured | met |", "|---|---|---|---|"]
    for r in results["training"]:
        goal = TARGETS.get((r["B"], r["T"], r["d"]))
        if goal is None:
            continue
        shape = f"B={r['B']} T={r['T']} d=h={r['h']}"
        for what, want, got in (
            ("vs sequential", goal[0], r["vs_sequential"]),
            ("vs LSTM", goal[1], r["vs_lstm"]),
        ):
            met = "yes" if got >= want else "**no**"
            lines.append(f"| {shape} | ≥ {want}x {what} | {got:.2f}x | {met} |")
    acc = results.get("accuracy")
    if acc:
        lines += [
            "",
            f"## The scan in linear and in log space (T={acc['T']}, B={acc['B']}, h={acc['h']})",
            "",
            "minGRU's coefficients of random inputs, zero carry (log space needs a positive"
            " state); error against the loop in float64; time of the scan's forward and"
            " gradient alone.",
            "",
            "| form | max relative error | ms |",
            "|---|---|---|",
        ]
        for name, row in acc["forms"].items():
            lines.append(f"| {name} | {row['max_rel_error']:.1e} | {row['ms']:.2f} |")
    if results.get("blocks"):
        lines += [
            "",
            "## Block length (minGRU training, ms)",
            "",
            "| B | T | h | " + " | ".join(f"block {b}" for b in BLOCKS) + " |",
            "|---|---|---|" + "---|" * len(BLOCKS),
        ]
        for r in results["blocks"]:
            cells = " | ".join(f"{r['ms'][b]:.1f}" for b in BLOCKS)
            lines.append(f"| {r['B']} | {r['T']} | {r['d']} | {cells} |")
    return "\n".join(lines) + "\n"


def gated_cases(shapes, args):
    """The gated recurrences' tables (``benchmarks/gated.py``), written to RESULTS_gated.md."""
    rows = []
    for shape in shapes:
        r = gated.case(shape, args.rounds, args.min_time, interleaved)
        rows.append(r)
        print(f"gated B={r['B']} T={r['T']} d={r['d']}: " + "  ".join(
            f"{n} {v:.1f} ms" for n, v in r["ms"].items()), flush=True)  # fmt: skip
    m = machine()
    head = [
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['system']}; JAX devices:"
        f" {', '.join(m['jax_devices'])}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- Date: {m['date']}; {args.rounds} interleaved rounds after warm-up, median per"
        " call, float32",
    ]
    parity = [] if args.no_parity else gated.parity()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = {"speed": rows, "parity": parity}
    (args.out_dir / "results_gated.json").write_text(json.dumps(out, indent=1) + "\n")
    (args.out_dir / "RESULTS_gated.md").write_text(gated.markdown(rows, head, parity))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the target shapes only, 3 rounds")
    parser.add_argument("--shapes", nargs="+", default=None, help="B,T,d triples")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per sample")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--no-blocks", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--no-gated", action="store_true", help="skip the gated recurrences")
    parser.add_argument("--only-gated", action="store_true", help="only the gated recurrences")
    parser.add_argument(
        "--no-parity", action="store_true", help="skip the parity check against RecurrentGemma"
    )
    args = parser.parse_args(argv)
    shapes = list(TARGETS) if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
    args.rounds = args.rounds or (3 if args.quick else 7)

    results = {"machine": machine(), "threads": threads(), "rounds": args.rounds}
    if not args.no_gated:
        results["gated"] = gated_cases(shapes if args.shapes else list(TARGETS), args)
    if args.only_gated:
        return results
    results["training"] = []
    for shape in shapes:
        r = training_case(shape, args)
        results["training"].append(r)
        print(
            f"B={r['B']} T={r['T']} h={r['h']}: "
            + "  ".join(f"{n} {v:.1f} ms" for n, v in r["ms"].items())
            + f"  | vs sequential {r['vs_sequential']:.2f}x, vs LSTM {r['vs_lstm']:.2f}x,"
            f" bound {r['bound']:.2f}x",
            flush=True,
        )
    if not args.no_accuracy:
        results["accuracy"] = accuracy_case(args)
        for name, row in results["accuracy"]["forms"].items():
            print(
                f"{name}: max rel error {row['max_rel_error']:.1e}, {row['ms']:.2f} ms", flush=True
            )
    results["blocks"] = []
    if not args.no_blocks:
        for shape in [s for s in shapes if s in TARGETS]:
            r = block_case(shape, args)
            results["blocks"].append(r)
            print(f"blocks B={r['B']} T={r['T']}: {r['ms']}", flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results_parallel.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out_dir / "RESULTS_parallel.md").write_text(markdown(results))
    print(f"wrote {args.out_dir / 'RESULTS_parallel.md'}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
