"""Times jaxrnn against PyTorch, Flax, Haiku and Equinox; writes RESULTS.md and results.json.

Run from the repository root::

    python -m benchmarks.run            # the full suite (tens of minutes on 2 cores)
    python -m benchmarks.run --quick    # one shape, few rounds, a smoke run

Every implementation runs in this process. After compiling and warming up,
each case runs in interleaved rounds (A B C ... A B C ...), so drift in machine
load hits all of them alike, and the median per call is reported. PyTorch runs
on as many threads as XLA's CPU client uses.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn
from benchmarks import char_lm_e2e, compile_time, parallel, peers, stacks
from benchmarks.timing import HERE, add_torch_threads, interleaved, machine, threads

SHAPES = {  # name -> (B, T, d = h)
    "standard": (32, 128, 256),
    "latency": (1, 512, 128),
    "throughput": (128, 64, 512),
}

# Targets for jaxrnn, as speed ratios (> 1 is faster).
TARGET_VS_PYTORCH = {  # (cell, mode)
    ("lstm", "forward"): 0.8,
    ("lstm", "train"): 1.0,
    ("gru", "forward"): 1.2,
    ("gru", "train"): 1.2,
    ("rnn", "forward"): 1.2,
    ("rnn", "train"): 1.2,
}
TARGET_VS_JAX_PEER = 1.1  # in training
TARGET_REMAT_MEMORY = 0.25
TARGET_REMAT_TIME = 1.5
# Two-layer bidirectional stacks, with lengths (and without: forward 0.9x PyTorch).
TARGET_STACK_FORWARD = 0.8  # x PyTorch
TARGET_STACK_FORWARD_NO_LENGTHS = 0.9
TARGET_STACK_TRAIN = 1.0  # x PyTorch
TARGET_STACK_VS_FLAX = 1.3  # x Flax Linen's Bidirectional(RNN) stack
TARGET_LAYER_OVERHEAD = 0.05  # the NNX and Linen layers within 5% of stack_scan
# minGRU training against its sequential scan, per (B, T, d = h); minLSTM within 15% of it.
TARGET_PARALLEL = {(1, 16384, 128): 3.0, (16, 4096, 256): 1.5}
TARGET_MINLSTM_GAP = 0.15
TARGET_CHAR_LM = 0.9  # the char LM's training step, x PyTorch's


def speed_case(cell, mode, shape, args, implementations=peers.implementations) -> dict:
    B, T, d = shape
    cases, skipped = {}, {}
    for name, build in implementations(cell).items():
        try:
            case = build(mode, B, T, d, d)
        except ImportError as e:
            skipped[name] = f"not installed ({e.name})"
            continue
        if case is None:
            skipped[name] = "no such cell"
        else:
            cases[name] = case
    timing = interleaved({n: c.run for n, c in cases.items()}, args.rounds, args.min_time)
    base = timing.get("pytorch", {}).get("median_s")
    for name, t in timing.items():
        t["compile_s"] = cases[name].compile_s
        t["vs_pytorch"] = base / t["median_s"] if base else None
    jax_peers = [n for n in timing if n != "pytorch" and not n.startswith("jaxrnn")]
    best = min(jax_peers, key=lambda n: timing[n]["median_s"]) if jax_peers else None
    result = {
        "cell": cell,
        "mode": mode,
        "B": B,
        "T": T,
        "d": d,
        "h": d,
        "timing": timing,
        "skipped": skipped,
        "best_jax_peer": best,
        "vs_best_jax_peer": (timing[best]["median_s"] / timing["jaxrnn"]["median_s"])
        if best
        else None,
    }
    del cases
    gc.collect()
    return result


def stack_case(cell, mode, shape, args, lengths=True) -> dict:
    """A two-layer bidirectional stack (with lengths or not); the layers' time over stack_scan's."""
    build = lambda cell: stacks.implementations(cell, lengths=lengths)
    result = speed_case(cell, mode, shape, args, build)
    result["lengths"] = lengths
    timing = result["timing"]
    base = timing["jaxrnn"]["median_s"]
    result["layer_overhead"] = {
        name: timing[name]["median_s"] / base - 1 for name in ("jaxrnn.linen", "jaxrnn.nnx")
    }
    return result


def memory_case(T, args) -> dict:
    """Peak memory and time of an LSTM training step, with and without remat."""
    B, h = args.memory_batch, args.memory_hidden
    out = {"cell": "lstm", "B": B, "T": T, "d": h, "h": h}
    runs = {}
    for remat in (False, True):
        params = jaxrnn.lstm_init(jax.random.key(0), h, h)
        xs = jax.random.normal(jax.random.key(1), (T, B, h))

        def loss(p, xs, remat=remat):
            return jnp.sum(jaxrnn.scan(jaxrnn.lstm_step, p, xs, remat=remat)[1])

        compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
        stats = compiled.memory_analysis()
        key = "remat" if remat else "plain"
        out[key] = {
            "temp_bytes": int(stats.temp_size_in_bytes),
            "peak_bytes": int(
                stats.temp_size_in_bytes
                + stats.argument_size_in_bytes
                + stats.output_size_in_bytes
                - stats.alias_size_in_bytes
            ),
        }
        runs[key] = lambda c=compiled, p=params, xs=xs: jax.block_until_ready(c(p, xs))
    timing = interleaved(runs, args.memory_rounds, args.min_time)
    for key in runs:
        out[key]["median_s"] = timing[key]["median_s"]
    out["memory_ratio"] = out["remat"]["peak_bytes"] / out["plain"]["peak_bytes"]
    out["temp_ratio"] = out["remat"]["temp_bytes"] / max(out["plain"]["temp_bytes"], 1)
    out["time_ratio"] = out["remat"]["median_s"] / out["plain"]["median_s"]
    return out


def _ms(s):
    return f"{1e3 * s:.2f}" if s is not None else "—"


def _x(r):
    return f"{r:.2f}x" if r is not None else "—"


def _mib(n):
    return f"{n / 2**20:.1f}"


def targets(results) -> list[dict]:
    rows = []
    for r in results["speed"]:
        shape = f"{r['cell']} {r['mode']} B={r['B']} T={r['T']} h={r['h']}"
        vs_pt = r["timing"]["jaxrnn"]["vs_pytorch"]
        if vs_pt is not None:
            goal = TARGET_VS_PYTORCH[r["cell"], r["mode"]]
            rows.append(
                {"case": shape, "what": f"≥ {goal}x PyTorch", "got": vs_pt, "met": vs_pt >= goal}
            )
        if r["vs_best_jax_peer"] is not None and r["mode"] == "train":
            rows.append(
                {
                    "case": shape,
                    "what": f"≥ {TARGET_VS_JAX_PEER}x best JAX peer ({r['best_jax_peer']})",
                    "got": r["vs_best_jax_peer"],
                    "met": r["vs_best_jax_peer"] >= TARGET_VS_JAX_PEER,
                }
            )
    for r in results.get("stacks", []):
        lengths = r.get("lengths", True)
        shape = f"2-layer bidir {r['cell']} {r['mode']} B={r['B']} T={r['T']} h={r['h']}"
        shape += "" if lengths else " no lengths"
        vs_pt = r["timing"]["jaxrnn"]["vs_pytorch"]
        forward = TARGET_STACK_FORWARD if lengths else TARGET_STACK_FORWARD_NO_LENGTHS
        goal = forward if r["mode"] == "forward" else TARGET_STACK_TRAIN
        rows.append(
            {"case": shape, "what": f"≥ {goal}x PyTorch", "got": vs_pt, "met": vs_pt >= goal}
        )
        rows.append(
            {
                "case": shape,
                "what": f"≥ {TARGET_STACK_VS_FLAX}x Flax Bidirectional(RNN)",
                "got": r["vs_best_jax_peer"],
                "met": r["vs_best_jax_peer"] >= TARGET_STACK_VS_FLAX,
            }
        )
        for name, overhead in r["layer_overhead"].items():
            rows.append(
                {
                    "case": shape,
                    "what": f"{name} ≤ {1 + TARGET_LAYER_OVERHEAD}x stack_scan's time",
                    "got": 1 + overhead,
                    "met": overhead <= TARGET_LAYER_OVERHEAD,
                }
            )
    for r in results.get("char_lm", []):
        rows.append(
            {
                "case": f"char LM train step B={r['batch_size']} T={r['seq_len']}"
                f" h={r['hidden_size']}",
                "what": f"≥ {TARGET_CHAR_LM}x PyTorch",
                "got": r["ratio"],
                "met": r["ratio"] >= TARGET_CHAR_LM,
            }
        )
    for r in results.get("parallel", []):
        shape = f"minGRU train B={r['B']} T={r['T']} h={r['h']}"
        goal = TARGET_PARALLEL.get((r["B"], r["T"], r["d"]))
        if goal is None:
            continue
        rows.append(
            {
                "case": shape,
                "what": f"≥ {goal}x its sequential scan",
                "got": r["vs_sequential"],
                "met": r["vs_sequential"] >= goal,
            }
        )
        ratio = r["minlstm_vs_sequential"] / r["vs_sequential"]
        rows.append(
            {
                "case": shape.replace("minGRU", "minLSTM"),
                "what": f"≥ {1 - TARGET_MINLSTM_GAP:.2f} of minGRU's ratio",
                "got": ratio,
                "met": ratio >= 1 - TARGET_MINLSTM_GAP,
            }
        )
    for c in results.get("compile", []):
        if c["met"] is not None:
            rows.append(
                {
                    "case": f"compile: {c['program']}",
                    "what": f"≤ {compile_time.TARGET_VS_FLAX}x Flax's compile time",
                    "got": c["vs_flax"],
                    "met": c["met"],
                }
            )
    for m in results["memory"]:
        shape = f"lstm train+remat B={m['B']} T={m['T']} h={m['h']}"
        rows.append(
            {
                "case": shape,
                "what": f"memory ≤ {TARGET_REMAT_MEMORY} of plain",
                "got": m["memory_ratio"],
                "met": m["memory_ratio"] <= TARGET_REMAT_MEMORY,
            }
        )
        rows.append(
            {
                "case": shape,
                "what": f"time ≤ {TARGET_REMAT_TIME}x plain",
                "got": m["time_ratio"],
                "met": m["time_ratio"] <= TARGET_REMAT_TIME,
            }
        )
    return rows


def markdown(results) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m benchmarks.run`; see `benchmarks/README.md` for the method and"
        " the notes on each target.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['system']}; JAX devices:"
        f" {', '.join(m['jax_devices'])}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- Threads: XLA's CPU client and PyTorch (`torch.set_num_threads`) both use"
        f" {results['threads']}",
        f"- Date: {m['date']}; {results['rounds']} interleaved rounds per case after warm-up,"
        " median per call",
        "",
        "Speed ratios are PyTorch's time (or the best JAX peer's) divided by jaxrnn's:"
        " above 1 jaxrnn is faster. GRUs are the reset-after form in every library.",
        "",
    ]
    for mode in peers.MODES:
        rows = [r for r in results["speed"] if r["mode"] == mode]
        if not rows:
            continue
        title = (
            "Forward"
            if mode == "forward"
            else "Training (forward + gradient of sum(ys) w.r.t. all params)"
        )
        lines += [
            f"## {title}: milliseconds per call (speed vs PyTorch)",
            "",
            "| cell | B | T | h | implementation | ms | vs PyTorch |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            for name, t in r["timing"].items():
                shown = f"**{name}**" if name == "jaxrnn" else name
                lines.append(
                    f"| {r['cell']} | {r['B']} | {r['T']} | {r['h']} | {shown} | "
                    f"{_ms(t['median_s'])} | {_x(t['vs_pytorch'])} |"
                )
            for name, why in r["skipped"].items():
                lines.append(f"| {r['cell']} | {r['B']} | {r['T']} | {r['h']} | {name} | {why} | |")
        lines.append("")
    lines += [
        "## jaxrnn against the others",
        "",
        "| cell | mode | B | T | h | vs PyTorch | best JAX peer | vs best JAX peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["speed"]:
        lines.append(
            f"| {r['cell']} | {r['mode']} | {r['B']} | {r['T']} | {r['h']} | "
            f"{_x(r['timing']['jaxrnn']['vs_pytorch'])} | {r['best_jax_peer'] or '—'} | "
            f"{_x(r['vs_best_jax_peer'])} |"
        )
    if results.get("stacks"):
        lines += [
            "",
            "## Two-layer bidirectional stacks: milliseconds per call",
            "",
            "With lengths spread over [T/2, T] (PyTorch on a packed sequence), or without"
            " lengths; jaxrnn's `stack_scan` and its Linen/NNX `Recurrent` layers on the same"
            " params, Flax Linen's `Bidirectional(RNN(cell), RNN(cell))` twice. Ratios over"
            " jaxrnn's `stack_scan`: above 1 it is faster.",
            "",
            "| cell | mode | lengths | B | T | h | "
            + " | ".join(stacks.implementations("lstm"))
            + " |",
            "|---|---|---|---|---|---|" + "---|" * len(stacks.implementations("lstm")),
        ]
        for r in results["stacks"]:
            base = r["timing"]["jaxrnn"]["median_s"]
            cells = [
                f"{_ms(t['median_s'])} ({_x(t['median_s'] / base)})" for t in r["timing"].values()
            ]
            with_lengths = "yes" if r.get("lengths", True) else "no"
            lines.append(
                f"| {r['cell']} | {r['mode']} | {with_lengths} | {r['B']} | {r['T']} | {r['h']} | "
                + " | ".join(cells)
                + " |"
            )
    if results.get("char_lm"):
        lines += [
            "",
            "## The char LM's training step end to end: characters per second",
            "",
            "`examples/char_lm.py`'s own `chunk_loss` and optimizer (embedding 64, one LSTM"
            " layer, readout, truncated BPTT, clipping, Adam) against the same model and step"
            " in PyTorch (`python -m benchmarks.char_lm_e2e`). Above 1 jaxrnn is faster.",
            "",
            "| B | T | h | jaxrnn | pytorch | vs PyTorch |",
            "|---|---|---|---|---|---|",
        ]
        for r in results["char_lm"]:
            lines.append(
                f"| {r['batch_size']} | {r['seq_len']} | {r['hidden_size']} | "
                f"{r['jaxrnn_chars_per_s']:,.0f} | {r['pytorch_chars_per_s']:,.0f} | "
                f"{_x(r['ratio'])} |"
            )
    if results.get("parallel"):
        lines += [
            "",
            "## minGRU and minLSTM trained in parallel: milliseconds per training step",
            "",
            "`jaxrnn.scan` of the step (the blocked linear recurrence and its gradient) against"
            " the same step's sequential `lax.scan`, differentiated by JAX; beside them jaxrnn's"
            " LSTM and the input projection alone (what any form computes: *bound* is sequential"
            " / projection). `python -m benchmarks.parallel` has more shapes and tables.",
            "",
            "| B | T | h | minGRU | its sequential | vs sequential | minLSTM | its sequential"
            " | vs sequential | LSTM | vs LSTM | bound |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results["parallel"]:
            ms = r["ms"]
            lines.append(
                f"| {r['B']} | {r['T']} | {r['h']} | {ms['mingru parallel']:.1f} |"
                f" {ms['mingru sequential']:.1f} | {_x(r['vs_sequential'])} |"
                f" {ms['minlstm parallel']:.1f} | {ms['minlstm sequential']:.1f} |"
                f" {_x(r['minlstm_vs_sequential'])} | {ms['lstm']:.1f} | {_x(r['vs_lstm'])} |"
                f" {_x(r['bound'])} |"
            )
    if results.get("compile"):
        lines += ["", *compile_time.markdown(results["compile"], results["compile_repeats"])]
    if results["memory"]:
        lines += [
            "",
            "## Memory of an LSTM training step, with and without `remat`",
            "",
            "Peak bytes XLA plans for the compiled step (arguments + outputs + temporaries),"
            " from `compiled.memory_analysis()`; temporaries are what remat reduces.",
            "",
            "| B | T | h | plain MiB (temp) | remat MiB (temp) | memory ratio | plain ms |"
            " remat ms | time ratio |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for mem in results["memory"]:
            p, q = mem["plain"], mem["remat"]
            lines.append(
                f"| {mem['B']} | {mem['T']} | {mem['h']} | {_mib(p['peak_bytes'])}"
                f" ({_mib(p['temp_bytes'])}) | {_mib(q['peak_bytes'])} ({_mib(q['temp_bytes'])})"
                f" | {mem['memory_ratio']:.3f} | {_ms(p['median_s'])} | {_ms(q['median_s'])} |"
                f" {mem['time_ratio']:.2f}x |"
            )
    lines += ["", "## Targets", "", "| case | target | measured | met |", "|---|---|---|---|"]
    for t in results["targets"]:
        got = f"{t['got']:.3f}" if "memory" in t["what"] else f"{t['got']:.2f}x"
        lines.append(f"| {t['case']} | {t['what']} | {got} | {'yes' if t['met'] else '**no**'} |")
    met = sum(t["met"] for t in results["targets"])
    lines += ["", f"{met} of {len(results['targets'])} targets met.", ""]
    for extra in results.get("extra_sections", []):
        lines += [extra, ""]
    return "\n".join(lines)


def _count(text) -> int:
    """An argparse type: a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def parse_shape(text):
    if text in SHAPES:
        return text, SHAPES[text]
    B, T, d = (int(v) for v in text.split(","))
    return text, (B, T, d)


def _timing_line(label, r):
    """One progress line: ``label`` and each implementation's time and ratio to PyTorch."""
    times = "  ".join(
        f"{n}: {_ms(t['median_s'])} ms ({_x(t['vs_pytorch'])})" for n, t in r["timing"].items()
    )
    return f"{label} {times}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="standard shape only, 3 rounds")
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=None,
        help=f"shape names ({', '.join(SHAPES)}) or B,T,d triples; default all",
    )
    parser.add_argument("--cells", nargs="*", default=list(peers.CELLS), choices=peers.CELLS)
    parser.add_argument("--modes", nargs="+", default=list(peers.MODES), choices=peers.MODES)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per sample")
    parser.add_argument(
        "--stack-cells",
        nargs="*",
        default=list(stacks.CELLS),
        choices=stacks.CELLS,
        help="two-layer bidirectional stacks, with lengths and without (see --stack-shape)",
    )
    parser.add_argument("--stack-shape", default="standard", help="a shape name or B,T,d")
    parser.add_argument(
        "--char-lm-hidden",
        type=int,
        nargs="*",
        default=None,
        help="hidden sizes of the char LM's training step against PyTorch; default 256 512",
    )
    parser.add_argument(
        "--compile-repeats",
        type=_count,
        default=None,
        help="compile times (benchmarks.compile_time), median of this many; 0 skips them;"
        " default 3 (0 with --quick)",
    )
    parser.add_argument(
        "--parallel-shapes",
        nargs="*",
        default=None,
        help="B,T,d shapes of minGRU/minLSTM training against their sequential scans; default"
        " the two targets (none with --quick)",
    )
    parser.add_argument("--compile-shape", default="standard", help="the scans' and stacks'")
    parser.add_argument("--compile-long-shape", default="1,16384,128", help="the minGRU's")
    parser.add_argument(
        "--compile-no-torch", action="store_true", help="no PyTorch first calls (processes)"
    )
    parser.add_argument("--memory-T", type=int, nargs="*", default=None, help="default 2048 4096")
    parser.add_argument("--memory-batch", type=int, default=16)
    parser.add_argument("--memory-hidden", type=int, default=256)
    parser.add_argument("--memory-rounds", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=HERE)
    add_torch_threads(parser)
    args = parser.parse_args(argv)
    if args.shapes is None:
        args.shapes = ["standard"] if args.quick else list(SHAPES)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.memory_T is None:
        args.memory_T = [] if args.quick else [2048, 4096]
    if args.char_lm_hidden is None:
        args.char_lm_hidden = [] if args.quick else [256, 512]
    if args.parallel_shapes is None:
        args.parallel_shapes = (
            [] if args.quick else [",".join(map(str, s)) for s in TARGET_PARALLEL]
        )
    if args.compile_repeats is None:
        args.compile_repeats = 0 if args.quick else 3

    try:
        import torch

        torch.set_num_threads(args.torch_threads or threads())
    except ImportError:
        args.char_lm_hidden = []  # its peer is PyTorch

    results = {
        "machine": machine(),
        "threads": threads(),
        "rounds": args.rounds,
        "speed": [],
        "stacks": [],
        "memory": [],
    }
    for shape_name in args.shapes:
        _, shape = parse_shape(shape_name)
        for cell in args.cells:
            for mode in args.modes:
                r = speed_case(cell, mode, shape, args)
                results["speed"].append(r)
                label = f"{cell:4} {mode:7} B={shape[0]:<3} T={shape[1]:<4} d=h={shape[2]:<4}"
                print(_timing_line(label, r), flush=True)
    _, shape = parse_shape(args.stack_shape)
    for lengths in (True, False):
        for cell in args.stack_cells:
            for mode in args.modes:
                r = stack_case(cell, mode, shape, args, lengths)
                results["stacks"].append(r)
                label = f"stack 2x bidir {cell:4} {mode:7} B={shape[0]} T={shape[1]} d=h={shape[2]}"
                label += "" if lengths else " no lengths"
                print(_timing_line(label, r), flush=True)
    if args.char_lm_hidden:
        results["char_lm"] = char_lm_e2e.measure(
            args.char_lm_hidden, rounds=args.rounds, min_time=args.min_time
        )
    results["parallel"] = []
    for text in args.parallel_shapes:
        B, T, d = parse_shape(text)[1]
        r = parallel.training_case((B, T, d), args, minlstm=True)
        results["parallel"].append(r)
        print(
            f"minGRU train B={B} T={T} d=h={d}: {_x(r['vs_sequential'])} its sequential scan,"
            f" minLSTM {_x(r['minlstm_vs_sequential'])}",
            flush=True,
        )
    if args.compile_repeats > 0:
        results["compile_repeats"] = args.compile_repeats
        results["compile"] = compile_time.measure(
            args.compile_repeats,
            shape=parse_shape(args.compile_shape)[1],
            long_shape=parse_shape(args.compile_long_shape)[1],
            char_lm_hidden=(args.char_lm_hidden or [256])[0],
            cells=args.cells,
            stack_cells=args.stack_cells,
            torch="torch" in sys.modules and not args.compile_no_torch,
            torch_threads=args.torch_threads,
        )
    for T in args.memory_T:
        mem = memory_case(T, args)
        results["memory"].append(mem)
        print(
            f"memory lstm B={mem['B']} T={T} h={mem['h']}: remat/plain memory "
            f"{mem['memory_ratio']:.3f}, time {mem['time_ratio']:.2f}x",
            flush=True,
        )
    results["targets"] = targets(results)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out_dir / "RESULTS.md").write_text(markdown(results))
    print(f"wrote {args.out_dir / 'RESULTS.md'} and results.json", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
