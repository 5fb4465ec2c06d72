"""Two-layer bidirectional stacks over padded batches, built the way users write them.

Each builder takes ``(cell, mode, B, T, d, h)`` and returns a :class:`peers.Case`
that runs a two-layer bidirectional LSTM or GRU over a time-major batch whose
sequences have different lengths (the longest ``T``): one forward pass, or one
training step (the gradient of the sum of the outputs with respect to all
parameters).

* ``pytorch``: ``nn.LSTM``/``nn.GRU(num_layers=2, bidirectional=True)`` on a
  packed sequence (``pack_padded_sequence``), its usual form with lengths;
* ``jaxrnn``: :func:`jaxrnn.stack_scan` with ``lengths``;
* ``jaxrnn.linen`` / ``jaxrnn.nnx``: the ``Recurrent`` layers, given the same
  params as ``jaxrnn`` (they should cost what ``stack_scan`` costs);
* ``flax Bidirectional(RNN)``: two ``nn.Bidirectional(nn.RNN(cell), nn.RNN(cell))``
  layers with ``seq_lengths``, Flax Linen's idiom (``OptimizedLSTMCell``, ``GRUCell``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import peers

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


def jaxrnn_case(cell, mode, B, T, d, h):
    step = jaxrnn.get_cell(cell).step
    xs, lengths = jnp.asarray(peers.inputs(T, B, d)), jnp.asarray(lengths_of(B, T))

    def forward(layers, xs):
        return jaxrnn.stack_scan(step, layers, xs, lengths=lengths)[1]

    return peers.jax_case(forward, _layers(cell, d, h), xs, mode)


def linen_case(cell, mode, B, T, d, h):
    model = jaxrnn.linen.Recurrent(
        h,
        cell=cell,
        cell_options=peers.OPTIONS.get(cell, {}),
        num_layers=NUM_LAYERS,
        bidirectional=True,
        time_major=True,
    )
    xs, lengths = jnp.asarray(peers.inputs(T, B, d)), jnp.asarray(lengths_of(B, T))
    variables = {"params": {"layers": _layers(cell, d, h)}}

    def forward(variables, xs):
        return model.apply(variables, xs, lengths=lengths)

    return peers.jax_case(forward, variables, xs, mode)


def nnx_case(cell, mode, B, T, d, h):
    from flax import nnx

    model = jaxrnn.nnx.Recurrent.from_layers(_layers(cell, d, h), time_major=True)
    graphdef, state = nnx.split(model)
    xs, lengths = jnp.asarray(peers.inputs(T, B, d)), jnp.asarray(lengths_of(B, T))

    def forward(state, xs):
        return nnx.merge(graphdef, state)(xs, lengths=lengths)

    return peers.jax_case(forward, state, xs, mode)


def flax_case(cell, mode, B, T, d, h):
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
    xs, lengths = jnp.asarray(peers.inputs(T, B, d)), jnp.asarray(lengths_of(B, T))
    params = model.init(jax.random.key(0), xs, lengths)

    def forward(params, xs):
        return model.apply(params, xs, lengths)

    return peers.jax_case(forward, params, xs, mode)


def torch_case(cell, mode, B, T, d, h):
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        d, h, num_layers=NUM_LAYERS, bidirectional=True
    )
    xs = torch.from_numpy(peers.inputs(T, B, d))
    lengths = torch.from_numpy(lengths_of(B, T)).long()

    def forward():
        packed = pack_padded_sequence(xs, lengths, enforce_sorted=False)
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


def implementations(cell):
    """name -> builder ``(mode, B, T, d, h) -> Case`` for a two-layer bidirectional ``cell``."""
    return {
        "pytorch": lambda *a: torch_case(cell, *a),
        "jaxrnn": lambda *a: jaxrnn_case(cell, *a),
        "jaxrnn.linen": lambda *a: linen_case(cell, *a),
        "jaxrnn.nnx": lambda *a: nnx_case(cell, *a),
        "flax Bidirectional(RNN)": lambda *a: flax_case(cell, *a),
    }
