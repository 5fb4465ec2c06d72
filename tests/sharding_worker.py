"""Runs the core on 4 host devices with the batch sharded; prints a JSON report.

Started by ``tests/test_sharding.py`` in a fresh process, because the number of
host devices is fixed when JAX starts (``XLA_FLAGS``). Each check compares the
sharded run with the same computation on unsharded inputs on one device.
"""

import json
import os
import re
import sys

if __name__ == "__main__":  # before JAX starts; a mere import leaves JAX alone
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxrnn

D, H, T, B = 3, 5, 9, 8
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute")


def max_difference(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def collectives(fn, *args):
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    return {name: len(re.findall(rf"\b{name}(-start)?\(", hlo)) for name in COLLECTIVES}


def batch_spec(leaf, axis):
    spec = [None] * leaf.ndim
    spec[axis] = "data"
    return P(*spec)


def main():
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, P())

    def shard(tree, axis):
        return jax.tree.map(
            lambda a: jax.device_put(a, NamedSharding(mesh, batch_spec(a, axis))), tree
        )

    xs = jax.random.normal(jax.random.key(1), (T, B, D))
    lengths = jnp.array([9, 3, 0, 7, 9, 1, 5, 12])
    resets = jax.random.bernoulli(jax.random.key(2), 0.2, (T, B))
    report = {"devices": jax.device_count()}

    for name in ("rnn", "lstm", "gru"):
        cell = jaxrnn.get_cell(name)
        params = cell.init(jax.random.key(0), D, H)

        def loss(params, xs, lengths, resets, cell=cell):
            carry, ys = jaxrnn.scan(cell.step, params, xs, lengths=lengths, resets=resets)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

        args = (params, xs, lengths, resets)
        sharded = (jax.device_put(params, replicated), shard(xs, 1), shard(lengths, 0))
        sharded += (shard(resets, 1),)
        run = jax.jit(
            lambda p, x, n, r, cell=cell: jaxrnn.scan(cell.step, p, x, lengths=n, resets=r)
        )
        (carry, ys), want = run(*sharded), run(*args)
        grad = jax.jit(jax.grad(loss, (0, 1)))
        report[f"scan_{name}"] = {
            "ys_spec": str(ys.sharding.spec),
            "carry_specs": [str(c.sharding.spec) for c in jax.tree.leaves(carry)],
            "value_diff": max_difference((carry, ys), want),
            "grad_diff": max_difference(grad(*sharded), grad(*args)),
            "grad_collectives": collectives(jax.grad(loss, (0, 1)), *sharded),
        }

    layers = jaxrnn.stack_init(
        jax.random.key(3), jaxrnn.lstm_init, D, H, num_layers=2, bidirectional=True
    )

    def stack_loss(layers, xs, lengths):
        _, ys = jaxrnn.stack_scan(
            jaxrnn.lstm_step, layers, xs, lengths=lengths, recurrent_dropout=0.2,
            key=jax.random.key(4),
        )  # fmt: skip
        return jnp.sum(ys**2)

    run = jax.jit(lambda ls, x, n: jaxrnn.stack_scan(jaxrnn.lstm_step, ls, x, lengths=n))
    sharded = (jax.device_put(layers, replicated), shard(xs, 1), shard(lengths, 0))
    (_, ys), want = run(*sharded), run(layers, xs, lengths)
    grad = jax.jit(jax.grad(stack_loss))
    report["stack"] = {
        "ys_spec": str(ys.sharding.spec),
        "value_diff": max_difference(ys, want[1]),
        "grad_diff": max_difference(grad(*sharded), grad(layers, xs, lengths)),
        "grad_collectives": collectives(jax.grad(stack_loss), *sharded),
    }

    inputs = jnp.moveaxis(xs, 0, 1)  # batch-major (B, T, d)
    model = jaxrnn.nnx.GRU(D, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    @jax.jit
    def nnx_forward(state, inputs, lengths):
        return nnx.merge(graphdef, state)(inputs, lengths=lengths)

    got = nnx_forward(jax.device_put(state, replicated), shard(inputs, 0), shard(lengths, 0))
    report["nnx"] = {
        "ys_spec": str(got.sharding.spec),
        "value_diff": max_difference(got, nnx_forward(state, inputs, lengths)),
    }

    linen = jaxrnn.linen.LSTM(H, num_layers=2, bidirectional=True)
    variables = linen.init(jax.random.key(5), inputs)
    apply = jax.jit(lambda v, x, n: linen.apply(v, x, lengths=n))
    got = apply(jax.device_put(variables, replicated), shard(inputs, 0), shard(lengths, 0))
    report["linen"] = {
        "ys_spec": str(got.sharding.spec),
        "value_diff": max_difference(got, apply(variables, inputs, lengths)),
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
