"""Two-layer bidirectional stacks, built the way users write them.

Each builder takes ``(cell, mode, B, T, d, h)`` (and ``lengths=``) and returns a
:class:`peers.Case` that runs a two-layer bidirectional LSTM or GRU over a
time-major batch: one forward pass, or one training step (the gradient of the
sum of the outputs with respect to all parameters). With ``lengths=True`` (the
default, what ``benchmarks.run`` times) the sequences have different lengths
(the longest ``T``); with ``lengths=False`` all have ``T`` steps and no
implementation is given lengths.

* ``pytorch``: ``nn.LSTM``/``nn.GRU(num_layers=2, bidirectional=True)``, on a
  packed sequence (``pack_padded_sequence``) with lengths, its usual form;
* ``jaxrnn``: :func:`jaxrnn.stack_scan`;
* ``jaxrnn.linen`` / ``jaxrnn.nnx``: the ``Recurrent`` layers, given the same
  params as ``jaxrnn`` (they should cost what ``stack_scan`` costs);
* ``flax Bidirectional(RNN)``: two ``nn.Bidirectional(nn.RNN(cell), nn.RNN(cell))``
  layers (with ``seq_lengths``), Flax Linen's idiom (``OptimizedLSTMCell``, ``GRUCell``).

``python -m benchmarks.stacks`` times them all, with and without lengths, in
interleaved rounds, and prints each one's time over ``stack_scan``'s.
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import peers, timing

CELLS = ("lstm", "gru")
NUM_LAYERS = 2


def lengths_of(B, T, seed=0):
    """Lengths spread over ``[T // 2, T]``, the longest exactly ``T``."""
    lengths = np.random.default_rng(seed).integers(max(1, T // 2), T + 1, size=B)
    lengths[0] = T
    return lengths.astype(np.int32)


def _layers(cell, d, h):
    return jaxrnn.stack_init(
        jax.random.key(0),
        jaxrnn.get_cell(cell).init,
        d,
        h,
        num_layers=NUM_LAYERS,
        bidirectional=True,
        **peers.OPTIONS.get(cell, {}),
    )


def _inputs(B, T, d, lengths):
    xs = jnp.asarray(peers.inputs(T, B, d))
    return xs, jnp.asarray(lengths_of(B, T)) if lengths else None


def jaxrnn_case(cell, mode, B, T, d, h, *, lengths=True):
    step = jaxrnn.get_cell(cell).step
    xs, lengths = _inputs(B, T, d, lengths)

    def forward(layers, xs):
        return jaxrnn.stack_scan(step, layers, xs, lengths=lengths)[1]

    return peers.jax_case(forward, _layers(cell, d, h), xs, mode)


def linen_case(cell, mode, B, T, d, h, *, lengths=True):
    model = jaxrnn.linen.Recurrent(
        h,
        cell=cell,
        cell_options=peers.OPTIONS.get(cell, {}),
        num_layers=NUM_LAYERS,
        bidirectional=True,
        time_major=True,
    )
    xs, lengths = _inputs(B, T, d, lengths)
    variables = {"params": {"layers": _layers(cell, d, h)}}

    def forward(variables, xs):
        return model.apply(variables, xs, lengths=lengths)

    return peers.jax_case(forward, variables, xs, mode)


def nnx_case(cell, mode, B, T, d, h, *, lengths=True):
    from flax import nnx

    model = jaxrnn.nnx.Recurrent.from_layers(_layers(cell, d, h), time_major=True)
    graphdef, state = nnx.split(model)
    xs, lengths = _inputs(B, T, d, lengths)

    def forward(state, xs):
        return nnx.merge(graphdef, state)(xs, lengths=lengths)

    return peers.jax_case(forward, state, xs, mode)


def flax_case(cell, mode, B, T, d, h, *, lengths=True):
    import flax.linen as nn

    cell_type = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[cell]

    class Stack(nn.Module):
        @nn.compact
        def __call__(self, xs, seq_lengths):
            for _ in range(NUM_LAYERS):
                xs = nn.Bidirectional(
                    nn.RNN(cell_type(features=h), time_major=True),
                    nn.RNN(cell_type(features=h), time_major=True),
                    time_major=True,
                )(xs, seq_lengths=seq_lengths)
            return xs

    model = Stack()
    xs, lengths = _inputs(B, T, d, lengths)
    params = model.init(jax.random.key(0), xs, lengths)

    def forward(params, xs):
        return model.apply(params, xs, lengths)

    return peers.jax_case(forward, params, xs, mode)


def torch_case(cell, mode, B, T, d, h, *, lengths=True):
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        d, h, num_layers=NUM_LAYERS, bidirectional=True
    )
    xs = torch.from_numpy(peers.inputs(T, B, d))
    given = torch.from_numpy(lengths_of(B, T)).long() if lengths else None

    def forward():
        if given is None:
            return module(xs)[0]
        packed = pack_padded_sequence(xs, given, enforce_sorted=False)
        return pad_packed_sequence(module(packed)[0])[0]

    if mode == "forward":

        def run():
            with torch.inference_mode():
                return forward()

    else:
        params = list(module.parameters())

        def run():
            for p in params:
                p.grad = None
            forward().sum().backward()
            return params[0].grad

    return peers.Case(run)


def implementations(cell, lengths=True):
    """name -> builder ``(mode, B, T, d, h) -> Case`` for a two-layer bidirectional ``cell``.

    ``lengths``: sequences of different lengths, given to every implementation.
    """
    kw = {"lengths": lengths}
    cases = {
        "pytorch": lambda *a: torch_case(cell, *a, **kw),
        "jaxrnn": lambda *a: jaxrnn_case(cell, *a, **kw),
        "jaxrnn.linen": lambda *a: linen_case(cell, *a, **kw),
        "jaxrnn.nnx": lambda *a: nnx_case(cell, *a, **kw),
        "flax Bidirectional(RNN)": lambda *a: flax_case(cell, *a, **kw),
    }
    return cases


def main(argv=None):
    """Times every implementation, with and without lengths; prints ratios to ``jaxrnn``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--modes", nargs="+", default=list(peers.MODES), choices=peers.MODES)
    parser.add_argument("--lengths", nargs="+", default=["yes", "no"], choices=["yes", "no"])
    parser.add_argument("--shape", default="32,128,256", help="B,T,d (h = d)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--only", nargs="+", default=None, help="implementations to time")
    timing.add_torch_threads(parser)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.torch_threads or timing.threads())
    B, T, d = (int(v) for v in args.shape.split(","))
    rows = []
    for cell in args.cells:
        for with_lengths in args.lengths:
            for mode in args.modes:
                builders = implementations(cell, with_lengths == "yes")
                if args.only:
                    builders = {k: v for k, v in builders.items() if k in {*args.only, "jaxrnn"}}
                runs = {name: build(mode, B, T, d, d).run for name, build in builders.items()}
                result = timing.interleaved(runs, args.rounds, args.min_time)
                base = result["jaxrnn"]["samples_s"]
                # Each ratio the median over rounds of that round's pair: the load moves less.
                ratios = {
                    name: statistics.median(
                        a / b for a, b in zip(r["samples_s"], base, strict=True)
                    )
                    for name, r in result.items()
                    if name != "jaxrnn"
                }
                row = {
                    "cell": cell,
                    "lengths": with_lengths,
                    "mode": mode,
                    "ms": {k: 1e3 * r["median_s"] for k, r in result.items()},
                    "ratio": ratios,
                }
                rows.append(row)
                shown = ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
                print(f"{cell} {mode} lengths={with_lengths}: jaxrnn faster than {shown}",
                      flush=True)  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
