"""Runs the core on 4 host devices with the batch sharded; prints a JSON report.

Started by ``tests/test_sharding.py`` in a fresh process, because the number of
host devices is fixed when JAX starts (``XLA_FLAGS``). Each check compares the
sharded run with the same computation on unsharded inputs on one device.
"""

import functools
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


def compiled_and_collectives(fn, *args):
    """``fn`` compiled for ``args`` (each program compiled once), and how many of each
    collective its HLO holds."""
    compiled = jax.jit(fn).lower(*args).compile()
    hlo = compiled.as_text()
    return compiled, {name: len(re.findall(rf"\b{name}(-start)?\(", hlo)) for name in COLLECTIVES}


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
        grad = jax.grad(loss, (0, 1))
        compiled, counts = compiled_and_collectives(grad, *sharded)
        report[f"scan_{name}"] = {
            "ys_spec": str(ys.sharding.spec),
            "carry_specs": [str(c.sharding.spec) for c in jax.tree.leaves(carry)],
            "value_diff": max_difference((carry, ys), want),
            "grad_diff": max_difference(compiled(*sharded), jax.jit(grad)(*args)),
            "grad_collectives": counts,
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
    compiled, counts = compiled_and_collectives(jax.grad(stack_loss), *sharded)
    report["stack"] = {
        "ys_spec": str(ys.sharding.spec),
        "value_diff": max_difference(ys, want[1]),
        "grad_diff": max_difference(
            compiled(*sharded), jax.jit(jax.grad(stack_loss))(layers, xs, lengths)
        ),
        "grad_collectives": counts,
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
    report["time"] = time_sharding()
    report["explicit"] = explicit()
    report["readme_time_sharding"] = readme_time_sharding()
    json.dump(report, sys.stdout)


def readme_time_sharding():
    """Runs the docs' block on time sharding as written, on these 4 devices."""
    from tests.helpers import docs_pages, page_blocks

    ((page, block),) = [
        (p, b) for p in docs_pages() for b in page_blocks(p) if 'axis_name="time"' in b
    ]
    exec(compile(block, str(page), "exec"), {})
    return "ran"


def explicit():
    """Under ``jax.set_mesh`` of a ``jax.make_mesh`` mesh (Explicit axes, sharding in
    types), with the batch split over ``data``: every registered cell's scan, a
    bidirectional stack with dropout and zoneout, both module families and a carry
    from ``jaxrnn.initial_carry``, against the same run unsharded."""
    from tests.helpers import CASES

    mesh = jax.make_mesh((4,), ("data",))
    lengths = jnp.array([9, 3, 0, 7, 9, 1, 5, 12])
    resets = jax.random.bernoulli(jax.random.key(2), 0.2, (T, B))
    out = {"axis_types": str(mesh.axis_types)}

    def put(tree, spec):
        return jax.tree.map(lambda a: jax.device_put(a, NamedSharding(mesh, spec)), tree)

    def record(name, fn, args, sharded, grad_args=(0, 1)):
        def loss(*a):
            carry, ys = fn(*a)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

        # Values and gradients in one program: half the compiles of two.
        def both(*a):
            return fn(*a), jax.grad(loss, grad_args)(*a)

        want, want_grad = jax.jit(both)(*args)
        with jax.set_mesh(mesh):
            compiled, counts = compiled_and_collectives(both, *sharded)
            got, got_grad = compiled(*sharded)
            out[name] = {
                "ys_spec": str(got[1].sharding.spec),
                "carry_specs": sorted({str(c.sharding.spec) for c in jax.tree.leaves(got[0])}),
                "value_diff": max_difference(got, want),
                "grad_diff": relative_difference(got_grad, want_grad),
                "grad_collectives": counts,
            }

    seen = set()
    for case in CASES.values():
        if case.cell in seen:
            continue
        seen.add(case.cell)
        cell = jaxrnn.get_cell(case.cell)
        params = cell.init(jax.random.key(0), D, 6, **case.options)  # 6: heads of 1, 2, 3
        xs = jax.random.normal(jax.random.key(1), (T, B, *case.spatial, D))
        n = jnp.reshape(lengths, (B,) + (1,) * len(case.spatial)) * jnp.ones(
            (B, *case.spatial), lengths.dtype
        )
        r = jnp.reshape(resets, (T, B) + (1,) * len(case.spatial)) & jnp.ones(
            (T, B, *case.spatial), bool
        )

        def run(params, xs, n, r, cell=cell):
            return jaxrnn.scan(cell, params, xs, lengths=n, resets=r)

        spec = P(None, "data")
        sharded = (params, put(xs, spec), put(n, P("data")), put(r, spec))
        record(case.cell, run, (params, xs, n, r), sharded)

    layers = jaxrnn.stack_init(jax.random.key(3), "lstm", D, H, num_layers=2, bidirectional=True)
    xs = jax.random.normal(jax.random.key(1), (T, B, D))

    def stack(layers, xs, lengths):
        return jaxrnn.stack_scan(
            "lstm", layers, xs, lengths=lengths, dropout=0.2, recurrent_dropout=0.2,
            zoneout=0.1, key=jax.random.key(4),
        )  # fmt: skip

    args = (layers, xs, lengths)
    record("stack", stack, args, (layers, put(xs, P(None, "data")), put(lengths, P("data"))))

    params = jaxrnn.gru_init(jax.random.key(0), D, H)

    def from_initial_carry(params, xs):
        carry = jaxrnn.initial_carry(params, (B,))  # unsharded zeros: scan shards them
        return jaxrnn.scan(jaxrnn.gru_step, params, xs, carry=carry)

    record("initial_carry", from_initial_carry, (params, xs), (params, put(xs, P(None, "data"))))

    inputs = jnp.moveaxis(xs, 0, 1)  # batch-major (B, T, d)
    model = jaxrnn.nnx.GRU(D, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    linen = jaxrnn.linen.LSTM(H, num_layers=2, bidirectional=True)
    variables = linen.init(jax.random.key(5), inputs)

    def nnx_run(state, inputs, lengths):
        return (), nnx.merge(graphdef, state)(inputs, lengths=lengths)

    def linen_run(variables, inputs, lengths):
        return (), linen.apply(variables, inputs, lengths=lengths)

    for name, fn, first in (("nnx", nnx_run, state), ("linen", linen_run, variables)):
        sharded = (first, put(inputs, P("data")), put(lengths, P("data")))
        record(name, fn, (first, inputs, lengths), sharded)
    return out


def relative_difference(a, b):
    """max |a - b| / max |b| over the leaves of two pytrees, leaf by leaf."""
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        / max(float(np.max(np.abs(np.asarray(y, np.float64)))), 1e-30)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def gathered_elements(hlo_line):
    """The number of elements an HLO line's all-gather produces (0 for other lines)."""
    match = re.search(r"=(.*?)\ball-gather(-start)?\(", hlo_line)
    if match is None:
        return 0
    shapes = re.findall(r"\[([\d,]*)\]", match.group(1))
    return sum(int(np.prod([int(n) for n in dims.split(",") if n])) for dims in shapes)


def time_sharding(length=512, batch=3):
    """minGRU and minLSTM with the time axis split over the 4 devices (``axis_name``),
    against the unsharded scan: values, gradients, and what is communicated."""
    mesh = Mesh(np.array(jax.devices()), ("time",))
    xs = jax.random.normal(jax.random.key(6), (length, batch, D))
    lengths = jnp.array([length, 190, 0], jnp.int16)  # one ends inside device 1's slice
    resets = jax.random.bernoulli(jax.random.key(7), 0.01, (length, batch))
    h0 = jax.random.normal(jax.random.key(8), (batch, H))
    args = (xs, h0, lengths, resets)
    out = {}
    for name in ("mingru", "minlstm"):
        cell = jaxrnn.get_cell(name)
        params = cell.init(jax.random.key(9), D, H)
        for reverse in (False, True):

            def run(params, xs, h0, lengths, resets, axis_name=None, cell=cell, reverse=reverse):
                return jaxrnn.scan(
                    cell.step, params, xs, carry=h0, lengths=lengths, resets=resets,
                    reverse=reverse, axis_name=axis_name,
                )  # fmt: skip

            sharded = jax.shard_map(
                functools.partial(run, axis_name="time"),
                mesh=mesh,
                in_specs=(P(), P("time"), P(), P(), P("time")),
                out_specs=(P(), P("time")),
            )

            def loss(params, xs, h0, lengths, resets, fn):
                final, ys = fn(params, xs, h0, lengths, resets)
                return jnp.sum(jnp.sin(3 * ys)) + jnp.sum(final**2)

            grad = jax.jit(jax.grad(loss, (0, 1, 2)), static_argnums=5)
            compiled, counts = compiled_and_collectives(sharded, params, *args)
            got, want = compiled(params, *args), jax.jit(run)(params, *args)
            hlo = compiled.as_text()
            gathered = [gathered_elements(line) for line in hlo.splitlines()]
            out[f"{name}_reverse={reverse}"] = {
                "ys_spec": str(got[1].sharding.spec),
                "value_diff": relative_difference(got, want),
                "grad_diff": relative_difference(
                    grad(params, *args, sharded), grad(params, *args, run)
                ),
                "largest_gather": max(gathered, default=0),
                "collectives": counts,
            }
    return out


if __name__ == "__main__":
    main()
