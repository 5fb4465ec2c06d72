"""xLSTM's cells trained: the sLSTM against jaxrnn's LSTM, the mLSTM's parallel forms against
its step loop and the ``xlstm`` package's PyTorch backends.

Run from the repository root::

    python -m benchmarks.xlstm              # writes benchmarks/RESULTS_xlstm.md and .json
    python -m benchmarks.xlstm --quick      # 3 rounds

Every figure is a training step (forward, then the gradient of a weighted sum of
all outputs with respect to the parameters, or for the package's backends to
their inputs), timed in interleaved rounds in one process, median per call.

- sLSTM at ``(B, T, d = h, heads)``: ``jaxrnn.scan(jaxrnn.slstm_step, ...)`` (its
  fused gradient), the same with ``gradient="autodiff"`` (``lax.scan`` of the
  step, differentiated by JAX), and jaxrnn's LSTM of the same size.
- mLSTM at ``(B, T, d = h, heads)``: ``jaxrnn.scan(jaxrnn.mlstm_step, ...)`` (the
  chunkwise form, chunks of 64), ``gradient="autodiff"`` (its step loop), and the
  package's backends on the same projections (PyTorch autograd): its
  ``chunkwise_simple`` (chunks of 64) and its recurrent step in a Python loop.
  The package's quadratic ``parallel_stabilized_simple`` needs several
  ``(B, heads, T, T)`` float32 arrays (4.3 GB each at B=1, T=16384): it is timed
  only where they fit (``--quadratic-limit``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks.timing import HERE, interleaved, machine, threads

SLSTM_SHAPES = [(32, 128, 256, 4)]
MLSTM_SHAPES = [(1, 16384, 256, 4), (16, 4096, 256, 4), (1, 1024, 256, 4)]


def _normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _compiled(loss, params, xs):
    compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    return lambda: jax.block_until_ready(compiled(params, xs))


def _scan_loss(step, w, **options):
    return lambda p, xs: jnp.sum(w * jaxrnn.scan(step, p, xs, **options)[1])


def slstm_runs(B, T, d, heads):
    xs, w = jnp.asarray(_normal((T, B, d), 0)), jnp.asarray(_normal((T, B, d), 1))
    slstm = jaxrnn.slstm_init(jax.random.key(0), d, d, num_heads=heads)
    lstm = jaxrnn.lstm_init(jax.random.key(0), d, d)
    return {
        "slstm": _compiled(_scan_loss(jaxrnn.slstm_step, w), slstm, xs),
        "slstm autodiff": _compiled(
            _scan_loss(jaxrnn.slstm_step, w, gradient="autodiff"), slstm, xs
        ),
        "lstm": _compiled(_scan_loss(jaxrnn.lstm_step, w), lstm, xs),
    }


def _package_runs(inputs, weights, quadratic, loop_ok):
    """The package's backends on the projections ``inputs``, training (torch autograd)."""
    import torch
    from xlstm.blocks.mlstm import backends

    torch.set_num_threads(threads())
    s = inputs.q.shape[-1]

    def tensor(a, *perm):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(*perm)))

    q, k, v = (tensor(a, 1, 2, 0, 3) for a in (inputs.q, inputs.k * math.sqrt(s), inputs.v))
    i, f = (tensor(a, 1, 2, 0) for a in (inputs.i, inputs.f))  # (B, NH, T)
    w = tensor(weights.reshape(*weights.shape[:2], *inputs.q.shape[-2:]), 1, 2, 0, 3)
    leaves = [a.requires_grad_(True) for a in (q, k, v, i, f)]

    def train(fn):
        def run():
            for leaf in leaves:
                leaf.grad = None
            (fn(*leaves) * w).sum().backward()

        return run

    runs = {
        "package chunkwise": train(
            lambda q, k, v, i, f: backends.chunkwise_simple(q, k, v, i, f, chunk_size=64)
        )
    }
    if quadratic:
        runs["package quadratic"] = train(
            lambda q, k, v, i, f: backends.parallel_stabilized_simple(
                q, k, v, i[..., None], f[..., None]
            )
        )

    def loop(q, k, v, i, f):
        B, NH, T, DH = q.shape
        c = torch.zeros(B, NH, DH, DH)
        n, m = torch.zeros(B, NH, DH, 1), torch.zeros(B, NH, 1, 1)
        hs = []
        for t in range(T):
            at = lambda a, t=t: a[:, :, t : t + 1].clone()  # the package squeezes in place
            h, (c, n, m) = backends.recurrent_step_stabilized_simple(
                c, n, m, at(q), at(k), at(v), at(i)[..., None], at(f)[..., None]
            )
            hs.append(h)
        return torch.cat(hs, dim=2)

    if loop_ok:
        runs["package step loop"] = train(loop)
    return runs


def mlstm_runs(B, T, d, heads, *, package=True, quadratic_limit=2048, loop_limit=16384):
    """The step loops keep a ``(B, heads, s, s)`` memory per step for their gradient (13.7 GB
    compiled at B=16, T=4096): above ``B·T = loop_limit`` jaxrnn's runs with ``remat=True``.
    The package's step loop (PyTorch ops from Python, one step at a time) runs only up to
    ``T = quadratic_limit``, as its quadratic form."""
    xs, w = jnp.asarray(_normal((T, B, d), 0)), jnp.asarray(_normal((T, B, d), 1))
    params = jaxrnn.mlstm_init(jax.random.key(0), d, d, num_heads=heads)
    remat = B * T > loop_limit
    runs = {
        "mlstm chunkwise": _compiled(_scan_loss(jaxrnn.mlstm_step, w), params, xs),
        "mlstm step loop": _compiled(
            _scan_loss(jaxrnn.mlstm_step, w, gradient="autodiff", remat=remat), params, xs
        ),
    }
    if package:
        inputs = jaxrnn.cells.mlstm.mlstm_inputs(params, xs)
        small = T <= quadratic_limit
        runs |= _package_runs(inputs, w, quadratic=small, loop_ok=small and not remat)
    return runs


def _case(name, shape, runs, args):
    timing = interleaved(runs, args.rounds, args.min_time)
    ms = {k: 1e3 * t["median_s"] for k, t in timing.items()}
    B, T, d, heads = shape
    row = {"cell": name, "B": B, "T": T, "d": d, "heads": heads, "ms": ms}
    print(f"{name} {shape}: " + "  ".join(f"{k} {v:.1f} ms" for k, v in ms.items()), flush=True)
    return row


def markdown(results) -> str:
    m = results["machine"]
    lines = [
        "# xLSTM's cells: results",
        "",
        "Written by `python -m benchmarks.xlstm`; see its docstring for what each column runs.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['system']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- Date: {m['date']}; {results['rounds']} interleaved rounds after warm-up, median"
        " per call, float32; milliseconds per training step",
        "",
        "## sLSTM",
        "",
        "| B | T | d=h | heads | sLSTM | sLSTM autodiff | LSTM | sLSTM vs LSTM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["slstm"]:
        ms = r["ms"]
        lines.append(
            f"| {r['B']} | {r['T']} | {r['d']} | {r['heads']} | {ms['slstm']:.1f} |"
            f" {ms['slstm autodiff']:.1f} | {ms['lstm']:.1f} | {ms['lstm'] / ms['slstm']:.2f}x |"
        )
    lines += [
        "",
        "## mLSTM",
        "",
        "Ratios: the other's time over jaxrnn's chunkwise form (above 1: jaxrnn is faster);"
        " a dash: not run (the package's quadratic form does not fit in memory there; its"
        " step loop runs at T=1024 only; jaxrnn's step loop runs with remat at B=16).",
        "",
        "| B | T | d=h | heads | chunkwise | step loop | package chunkwise | package quadratic |"
        " package step loop | vs step loop | vs package chunkwise |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["mlstm"]:
        ms = r["ms"]
        cell = lambda k, ms=ms: f"{ms[k]:.0f}" if k in ms else "-"
        ratio = lambda k, ms=ms: f"{ms[k] / ms['mlstm chunkwise']:.2f}x" if k in ms else "-"
        lines.append(
            f"| {r['B']} | {r['T']} | {r['d']} | {r['heads']} | {cell('mlstm chunkwise')} |"
            f" {cell('mlstm step loop')} | {cell('package chunkwise')} |"
            f" {cell('package quadratic')} | {cell('package step loop')} |"
            f" {ratio('mlstm step loop')} | {ratio('package chunkwise')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--slstm-shapes", nargs="*", default=None, help="B,T,d,heads")
    parser.add_argument("--mlstm-shapes", nargs="*", default=None, help="B,T,d,heads")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per sample")
    parser.add_argument("--no-package", action="store_true", help="skip the xlstm package")
    parser.add_argument("--quadratic-limit", type=int, default=2048, help="largest T for it")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    parse = lambda shapes, default: [
        tuple(int(v) for v in s.split(",")) for s in (default if shapes is None else shapes)
    ]
    slstm_shapes = parse(args.slstm_shapes, [",".join(map(str, s)) for s in SLSTM_SHAPES])
    mlstm_shapes = parse(args.mlstm_shapes, [",".join(map(str, s)) for s in MLSTM_SHAPES])
    args.rounds = args.rounds or (3 if args.quick else 5)

    results = {"machine": machine(), "threads": threads(), "rounds": args.rounds}
    results["slstm"] = [_case("slstm", s, slstm_runs(*s), args) for s in slstm_shapes]
    results["mlstm"] = [
        _case(
            "mlstm",
            s,
            mlstm_runs(*s, package=not args.no_package, quadratic_limit=args.quadratic_limit),
            args,
        )
        for s in mlstm_shapes
    ]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results_xlstm.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out_dir / "RESULTS_xlstm.md").write_text(markdown(results))
    print(f"wrote {args.out_dir / 'RESULTS_xlstm.md'}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
