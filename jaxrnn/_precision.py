"""Mixed precision: a compute dtype for the matmuls, a wider dtype for the carry.

The policy, as Flax names it (``dtype`` the compute dtype, ``param_dtype`` the
parameters' own): :func:`jaxrnn.scan` with ``dtype=jnp.bfloat16`` casts the
params and inputs to bfloat16, so every matmul reads bfloat16 operands, and
keeps the carry in float32 (``carry_dtype``). The steps are written for it:

* every matmul takes its operands in the weight's dtype and accumulates in at
  least float32 (:func:`matmul`), so the gate pre-activations, the gate math and
  the state update run in float32 whatever the weights' dtype;
* the new carry is cast back to the incoming carry's dtype (:func:`like`), so a
  float32 carry stays float32 and a bfloat16 carry stays bfloat16;
* a step checks that its input has the params' dtype and that its carry has the
  params' dtype or a wider float one.

With float32 params, inputs and carry nothing is cast and every program is the
one it was without a policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _checks


def working(dtype):
    """The dtype a matmul of ``dtype`` operands accumulates in: at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def matmul(a, w):
    """``a @ w`` with ``a`` cast to ``w``'s dtype, accumulated in :func:`working` of it."""
    return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=working(w.dtype))


def like(tree, reference):
    """``tree`` with each leaf cast to the dtype of the matching leaf of ``reference``."""
    return jax.tree.map(lambda a, r: a.astype(r.dtype), tree, reference)


def cast_floating(tree, dtype):
    """``tree`` with its floating-point leaves cast to ``dtype`` (integers left alone)."""

    def cast(leaf):
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def policy(dtype, carry_dtype):
    """Checks :func:`jaxrnn.scan`'s ``dtype`` and ``carry_dtype``; returns them as
    dtypes, ``carry_dtype`` defaulting to float32 (or ``dtype`` if wider)."""
    if dtype is not None:
        dtype = _checks.float_dtype(dtype, "dtype")
    if carry_dtype is not None:
        carry_dtype = _checks.float_dtype(carry_dtype, "carry_dtype")
    elif dtype is not None:
        carry_dtype = working(dtype)
    return dtype, carry_dtype


def with_precision(step, dtype, carry_dtype=None):
    """``step`` under a mixed-precision policy, for calling one step at a time.

    :func:`jaxrnn.scan` and :func:`jaxrnn.stack_scan` take the policy as their
    ``dtype`` and ``carry_dtype`` keywords; this is the same policy for a single
    step (streaming, sampling): the returned ``step(params, carry, x)`` casts
    the params' floating leaves and ``x`` to ``dtype``, the carry to
    ``carry_dtype`` (float32 by default for a narrower ``dtype``), and returns the
    new carry in ``carry_dtype`` and ``y`` in ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.lstm_init(jax.random.key(0), 3, 5)  # float32 params
        >>> step = jaxrnn.with_precision(jaxrnn.lstm_step, jnp.bfloat16)
        >>> carry, y = step(p, jaxrnn.initial_carry(p, (2,)), jnp.ones((2, 3)))
        >>> carry.c.dtype, y.dtype
        (dtype('float32'), dtype(bfloat16))
    """
    dtype, carry_dtype = policy(dtype, carry_dtype)
    if dtype is None:
        raise TypeError("dtype: expected a floating-point dtype (the compute dtype), got None")

    def mixed(params, carry, x, **options):
        params, x = cast_floating(params, dtype), _checks.as_floating(x, "x").astype(dtype)
        carry, y = step(params, cast_floating(carry, carry_dtype), x, **options)
        return carry, cast_floating(y, dtype)

    mixed.__name__ = f"with_precision({getattr(step, '__name__', 'step')})"
    return mixed
