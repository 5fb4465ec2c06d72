"""The gated linear recurrences (RG-LRU, Hawk's block, LRU, S6) in parallel, and RecurrentGemma.

Run by ``python -m benchmarks.parallel`` (``--only-gated`` for these tables alone,
which it writes to ``benchmarks/RESULTS_gated.md`` and ``results_gated.json``).
Per shape ``(B, T, d = h)``, every figure timed in one process, interleaved,
median per call:

- ``<cell> parallel``: a training step (forward, then the gradient of a weighted
  sum of all outputs with respect to all parameters) of ``jaxrnn.scan`` of the
  cell's step, i.e. its scan rule (``LinearRecurrence``, or ``HawkScan``);
- ``<cell> sequential``: the same with ``gradient="autodiff"``, ``lax.scan`` of
  the step, differentiated by JAX;
- ``lstm``: jaxrnn's LSTM of the same size (its fused gradient);
- RecurrentGemma's ``RGLRU`` layer (``num_heads=1``, blocks of ``d``), forward
  and training, with its ``LINEAR_NATIVE`` and ``ASSOCIATIVE_NATIVE`` scans,
  against ``jaxrnn.scan(jaxrnn.rglru_step, ...)`` on the same (converted)
  parameters and inputs (``segment_pos`` counting from 0: one document).

S6 runs with ``state_size=16``; the LRU with ``N = h``; Hawk's block with
``lru_width = h`` and a convolution of width 4.

:func:`parity` measures how far jaxrnn's RG-LRU and Hawk block are from
RecurrentGemma's ``RGLRU`` and ``RecurrentBlock`` on the same parameters:
outputs and the gradients of all parameters and inputs, for both scans, with
one document per row and with ``segment_pos`` resets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

CELLS = {"rglru": {}, "hawk": {}, "lru": {}, "s6": {"state_size": 16}}
#: The issue's targets: the parallel rule against the sequential scan at B=1, T=16384,
#: and jaxrnn's RG-LRU against RecurrentGemma's best scan.
TARGET_VS_SEQUENTIAL, TARGET_SHAPE = 1.3, (1, 16384, 128)
TARGET_VS_RECURRENTGEMMA = 1.0
SCANS = ("LINEAR_NATIVE", "ASSOCIATIVE_NATIVE")


def _array(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def _compiled(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    return lambda: jax.block_until_ready(compiled(*args))


def cell_runs(B, T, d) -> dict:
    """name -> zero-argument callable: each cell's parallel and sequential training step, and
    the LSTM's."""
    xs, w = _array((T, B, d), 0), _array((T, B, d), 1)
    runs = {}
    for name, options in CELLS.items():
        cell = jaxrnn.get_cell(name)
        params = cell.init(jax.random.key(0), d, d, **options)
        for form, gradient in (("parallel", "auto"), ("sequential", "autodiff")):
            loss = lambda p, xs, s=cell.step, g=gradient: jnp.sum(
                w * jaxrnn.scan(s, p, xs, gradient=g)[1]
            )
            runs[f"{name} {form}"] = _compiled(jax.grad(loss), params, xs)
    lstm = jaxrnn.lstm_init(jax.random.key(0), d, d)
    loss = lambda p, xs: jnp.sum(w * jaxrnn.scan(jaxrnn.lstm_step, p, xs)[1])
    runs["lstm"] = _compiled(jax.grad(loss), lstm, xs)
    return runs


def recurrentgemma_runs(B, T, d) -> dict:
    """name -> callable: RecurrentGemma's RGLRU layer and jaxrnn's, forward and training.

    Empty where RecurrentGemma is not installed.
    """
    try:
        from recurrentgemma import common
        from recurrentgemma.jax import layers
    except ImportError:
        return {}
    with jax.numpy_rank_promotion("allow"):  # RecurrentGemma broadcasts implicitly
        return _recurrentgemma_runs(B, T, d, common, layers)


def _recurrentgemma_runs(B, T, d, common, layers):
    x, w = _array((B, T, d), 0), _array((B, T, d), 1)
    segment_pos = jnp.tile(jnp.arange(T), (B, 1))
    variables = layers.RGLRU(width=d, num_heads=1).init(
        jax.random.key(0), x[:, :1], segment_pos[:, :1]
    )
    runs = {}
    for scan in SCANS:
        layer = layers.RGLRU(width=d, num_heads=1, scan_type=getattr(common.ScanType, scan))
        forward = lambda v, x, layer=layer: layer.apply(v, x, segment_pos)[0]
        runs[f"recurrentgemma {scan} forward"] = _compiled(forward, variables, x)
        loss = lambda v, x, f=forward: jnp.sum(w * f(v, x))
        runs[f"recurrentgemma {scan} train"] = _compiled(jax.grad(loss), variables, x)

    def ours(v, x):  # batch-major in and out, as the layer
        params = jaxrnn.interop.from_recurrentgemma(v)
        return jnp.swapaxes(jaxrnn.scan(jaxrnn.rglru_step, params, jnp.swapaxes(x, 0, 1))[1], 0, 1)

    runs["jaxrnn rglru forward"] = _compiled(ours, variables, x)
    runs["jaxrnn rglru train"] = _compiled(
        jax.grad(lambda v, x: jnp.sum(w * ours(v, x))), variables, x
    )
    return runs


def parity(B=2, T=48, d=32, heads=2) -> list[dict]:
    """Max relative error (``max |ours - theirs| / max |theirs|`` over each array) of the
    outputs and of the gradients of a weighted loss, per layer, scan and segmentation."""
    try:
        from recurrentgemma import common
        from recurrentgemma.jax import layers, modules
    except ImportError:
        return []
    x, w = _array((B, T, d), 0), _array((B, T, d), 1)
    rng = np.random.default_rng(2)
    starts = np.where(rng.random((B, T)) < 0.02, 0, 1)
    starts[:, 0] = 0
    resets = np.zeros((B, T), int)
    for b in range(B):  # positions counting from each document's start
        for t in range(1, T):
            resets[b, t] = 0 if starts[b, t] == 0 else resets[b, t - 1] + 1
    segmentations = {"one document": np.tile(np.arange(T), (B, 1)), "resets": resets}
    rows = []
    with jax.numpy_rank_promotion("allow"):
        for layer_name, make, step in (
            ("RGLRU", lambda s: layers.RGLRU(width=d, num_heads=heads, scan_type=s),
             jaxrnn.rglru_step),
            ("RecurrentBlock", lambda s: modules.RecurrentBlock(width=d, num_heads=heads,
             scan_type=s), jaxrnn.hawk_step),
        ):  # fmt: skip
            variables = make(common.ScanType.LINEAR_NATIVE).init(
                jax.random.key(0), x[:, :1], jnp.zeros((B, 1), int)
            )
            variables = jax.tree.map(  # random biases, so that they count
                lambda a: a + 0.3 * jnp.asarray(rng.standard_normal(a.shape), a.dtype), variables
            )
            for scan in SCANS:
                layer = make(getattr(common.ScanType, scan))
                for seg_name, pos in segmentations.items():
                    pos = jnp.asarray(pos)

                    def theirs(v, x, layer=layer, pos=pos):
                        return layer.apply(v, x, pos)[0]

                    def ours(v, x, pos=pos, step=step):
                        params = jaxrnn.interop.from_recurrentgemma(v)
                        xs, resets = jnp.swapaxes(x, 0, 1), (pos == 0).T
                        return jnp.swapaxes(jaxrnn.scan(step, params, xs, resets=resets)[1], 0, 1)

                    errors = {}
                    for name, f in (("theirs", theirs), ("ours", ours)):
                        loss = lambda v, x, f=f: jnp.sum(w * f(v, x))
                        errors[name] = jax.jit(lambda v, x, f=f, loss=loss: (
                            f(v, x), jax.grad(loss, (0, 1))(v, x)))(variables, x)  # fmt: skip
                    rel = lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                    (y_o, g_o), (y_t, g_t) = errors["ours"], errors["theirs"]
                    grads = jax.tree.leaves(jax.tree.map(rel, g_o, g_t))
                    rows.append({
                        "layer": layer_name, "scan": scan, "segments": seg_name,
                        "outputs": rel(y_o, y_t), "gradients": max(grads),
                    })  # fmt: skip
    return rows


def case(shape, rounds, min_time, interleaved) -> dict:
    """Every run at ``shape``, interleaved in one set of rounds."""
    B, T, d = shape
    runs = cell_runs(B, T, d) | recurrentgemma_runs(B, T, d)
    timing = interleaved(runs, rounds, min_time)
    ms = {name: 1e3 * t["median_s"] for name, t in timing.items()}
    out = {"B": B, "T": T, "d": d, "ms": ms, "cells": {}}
    for name in CELLS:
        par, seq = ms[f"{name} parallel"], ms[f"{name} sequential"]
        out["cells"][name] = {"vs_sequential": seq / par, "vs_lstm": ms["lstm"] / par}
    if "jaxrnn rglru train" in ms:
        for mode in ("forward", "train"):
            best = min(ms[f"recurrentgemma {s} {mode}"] for s in SCANS)
            out[f"vs_recurrentgemma_{mode}"] = best / ms[f"jaxrnn rglru {mode}"]
    return out


def parity_markdown(rows) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Parity with RecurrentGemma (B=2, T=48, d=32, 2 heads, float32)",
        "",
        "Max relative error `max |jaxrnn - RecurrentGemma| / max |RecurrentGemma|` of each"
        " array, largest over the arrays: outputs, and gradients of a weighted loss with"
        " respect to every parameter and the inputs.",
        "",
        "| layer | scan | segments | outputs | gradients |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['scan']} | {r['segments']} | {r['outputs']:.1e} |"
            f" {r['gradients']:.1e} |"
        )
    return lines


def markdown(results, machine_lines, parity_rows=()) -> str:
    lines = [
        "# Gated linear recurrences in parallel: results",
        "",
        "Written by `python -m benchmarks.parallel` (`benchmarks/gated.py`; see its docstring"
        " for what each row runs).",
        "",
        *machine_lines,
        "",
        "## Training: milliseconds per step (parallel rule / sequential `lax.scan`), and ratios",
        "",
        "Ratios: the other's time divided by the parallel rule's (above 1: the rule is faster).",
        "",
        "| B | T | d=h | cell | parallel | sequential | LSTM | vs sequential | vs LSTM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, ratio in r["cells"].items():
            ms = r["ms"]
            lines.append(
                f"| {r['B']} | {r['T']} | {r['d']} | {name} | {ms[f'{name} parallel']:.1f} |"
                f" {ms[f'{name} sequential']:.1f} | {ms['lstm']:.1f} |"
                f" **{ratio['vs_sequential']:.2f}x** | {ratio['vs_lstm']:.2f}x |"
            )
    rg = [r for r in results if "vs_recurrentgemma_train" in r]
    if rg:
        lines += [
            "",
            "## RG-LRU against RecurrentGemma's `RGLRU` layer (ms; ratio: its best scan / jaxrnn)",
            "",
            "| B | T | d | mode | LINEAR_NATIVE | ASSOCIATIVE_NATIVE | jaxrnn | ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rg:
            ms = r["ms"]
            for mode in ("forward", "train"):
                lines.append(
                    f"| {r['B']} | {r['T']} | {r['d']} | {mode} |"
                    f" {ms[f'recurrentgemma LINEAR_NATIVE {mode}']:.1f} |"
                    f" {ms[f'recurrentgemma ASSOCIATIVE_NATIVE {mode}']:.1f} |"
                    f" {ms[f'jaxrnn rglru {mode}']:.1f} |"
                    f" **{r[f'vs_recurrentgemma_{mode}']:.2f}x** |"
                )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for r in results:
        if (r["B"], r["T"], r["d"]) == TARGET_SHAPE:
            for name, ratio in r["cells"].items():
                got = ratio["vs_sequential"]
                met = "yes" if got >= TARGET_VS_SEQUENTIAL else "**no**"
                lines.append(
                    f"| {name}: parallel ≥ {TARGET_VS_SEQUENTIAL}x sequential at B={r['B']}"
                    f" T={r['T']} | {got:.2f}x | {met} |"
                )
        for mode in ("forward", "train"):
            got = r.get(f"vs_recurrentgemma_{mode}")
            if got is not None:
                met = "yes" if got >= TARGET_VS_RECURRENTGEMMA else "**no**"
                lines.append(
                    f"| RG-LRU {mode} ≥ {TARGET_VS_RECURRENTGEMMA}x RecurrentGemma's best scan at"
                    f" B={r['B']} T={r['T']} d={r['d']} | {got:.2f}x | {met} |"
                )
    return "\n".join([*lines, *parity_markdown(parity_rows)]) + "\n"
