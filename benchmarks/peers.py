"""The implementations under test, each built the way its users would write it.

Every builder takes ``(cell, mode, B, T, d, h)`` and returns a :class:`Case`:
a zero-argument callable that runs one forward pass (``mode="forward"``) or one
training step (``mode="train"``: forward, then the gradient of the sum of all
outputs with respect to all parameters) and waits for the result, plus the
compile time where there is one. Inputs are time-major ``(T, B, d)`` for all.

A builder returns ``None`` when the library has no such cell.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

CELLS = ("rnn", "lstm", "gru")
MODES = ("forward", "train")


@dataclasses.dataclass
class Case:
    run: Callable[[], object]
    compile_s: float | None = None
    #: traces, lowers and compiles the program again (``benchmarks.compile_time``)
    compile: Callable[[], object] | None = None


def inputs(T, B, d, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, d), dtype=np.float32)


def jax_case(forward, params, xs, mode) -> Case:
    """Jits ``forward(params, xs) -> ys`` (or its training step) and times the compile."""
    if mode == "forward":
        fn = forward
    else:
        fn = jax.grad(lambda p, xs: jnp.sum(forward(p, xs)))
    compile = lambda: jax.jit(fn).lower(params, xs).compile()
    start = time.perf_counter()
    compiled = compile()
    compile_s = time.perf_counter() - start
    return Case(lambda: jax.block_until_ready(compiled(params, xs)), compile_s, compile)


# jaxrnn: the public API, jaxrnn.scan with a built-in step.

# PyTorch, Flax and Equinox apply the GRU's reset gate after the recurrent matmul.
OPTIONS = {"gru": {"reset_after": True}}


def jaxrnn_case(cell, mode, B, T, d, h, *, remat=False):
    cell_ = jaxrnn.get_cell(cell)
    params = cell_.init(jax.random.key(0), d, h, **OPTIONS.get(cell, {}))
    xs = jnp.asarray(inputs(T, B, d))
    return jax_case(lambda p, xs: jaxrnn.scan(cell_.step, p, xs, remat=remat)[1], params, xs, mode)


# PyTorch: nn.RNN / nn.LSTM / nn.GRU, fused CPU kernels.


def torch_case(cell, mode, B, T, d, h):
    import torch

    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](d, h)
    xs = torch.from_numpy(inputs(T, B, d))
    if mode == "forward":

        def run():
            with torch.inference_mode():
                return module(xs)[0]

    else:
        params = list(module.parameters())

        def run():
            for p in params:
                p.grad = None
            module(xs)[0].sum().backward()
            return params[0].grad

    return Case(run)


# Flax Linen: nn.RNN over a cell.


def flax_case(cell_name, mode, B, T, d, h):
    import flax.linen as nn

    cell = {
        "rnn": nn.SimpleCell,
        "lstm": nn.LSTMCell,
        "lstm_optimized": nn.OptimizedLSTMCell,
        "gru": nn.GRUCell,
    }[cell_name](features=h)
    model = nn.RNN(cell, time_major=True)
    xs = jnp.asarray(inputs(T, B, d))
    params = model.init(jax.random.key(0), xs)
    return jax_case(model.apply, params, xs, mode)


# Haiku: hk.dynamic_unroll over a core.


def haiku_case(cell, mode, B, T, d, h):
    import haiku as hk

    core_type = {"rnn": hk.VanillaRNN, "lstm": hk.LSTM, "gru": hk.GRU}[cell]

    def forward(xs):
        core = core_type(h)
        ys, _ = hk.dynamic_unroll(core, xs, core.initial_state(B), time_major=True)
        return ys

    model = hk.without_apply_rng(hk.transform(forward))
    xs = jnp.asarray(inputs(T, B, d))
    params = model.init(jax.random.key(0), xs)
    return jax_case(model.apply, params, xs, mode)


# Equinox: a cell defined per example, vmapped over the batch, under lax.scan.


def equinox_case(cell, mode, B, T, d, h):
    import equinox as eqx

    if cell == "rnn":
        return None  # Equinox has no vanilla RNN cell.
    module = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[cell](d, h, key=jax.random.key(0))
    zeros = jnp.zeros((B, h))
    carry0 = (zeros, zeros) if cell == "lstm" else zeros

    def forward(module, xs):
        def body(carry, x):
            carry = jax.vmap(module)(x, carry)
            return carry, carry[0] if cell == "lstm" else carry

        return jax.lax.scan(body, carry0, xs)[1]

    xs = jnp.asarray(inputs(T, B, d))
    return jax_case(forward, module, xs, mode)


def implementations(cell):
    """name -> builder ``(mode, B, T, d, h) -> Case | None`` for ``cell``, PyTorch first."""
    impls = {
        "pytorch": lambda *a: torch_case(cell, *a),
        "jaxrnn": lambda *a: jaxrnn_case(cell, *a),
    }
    if cell == "lstm":
        impls["flax OptimizedLSTMCell"] = lambda *a: flax_case("lstm_optimized", *a)
    flax_name = {"rnn": "SimpleCell", "lstm": "LSTMCell", "gru": "GRUCell"}[cell]
    impls[f"flax {flax_name}"] = lambda *a: flax_case(cell, *a)
    impls["haiku"] = lambda *a: haiku_case(cell, *a)
    if cell != "rnn":
        impls["equinox"] = lambda *a: equinox_case(cell, *a)
    return impls
