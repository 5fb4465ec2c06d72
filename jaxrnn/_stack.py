"""Deep and bidirectional stacks of any cell, as pure functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrnn._carry import initial_carry
from jaxrnn._scan import Step, scan


def stack_init(
    key,
    init: Callable,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    **cell_options,
):
    """Initialises a stack of cells: ``num_layers`` layers, one or two directions each.

    Layer 0 reads ``input_size`` features; layer ``k + 1`` reads layer ``k``'s
    outputs with both directions concatenated (forward first), as in PyTorch.

    Args:
        key: a PRNG key; every layer and direction gets its own.
        init: a cell initialiser ``init(key, input_size, hidden_size, **cell_options)``,
            e.g. :func:`jaxrnn.lstm_init` or a user's own.
        input_size: ``d``.
        hidden_size: ``h``, per direction.
        num_layers: depth of the stack.
        bidirectional: add a backward direction to every layer.
        **cell_options: passed to ``init`` (``forget_bias``, ``reset_after``, ``dtype``, ...).

    Returns:
        ``layers``: a tuple with one entry per layer, each a tuple of params per
        direction (forward, then backward).

    Example:
        >>> import jax, jaxrnn
        >>> layers = jaxrnn.stack_init(jax.random.key(0), jaxrnn.gru_init, 3, 5,
        ...                            num_layers=2, bidirectional=True)
        >>> len(layers), len(layers[1]), layers[1][0].w_x.shape
        (2, 2, (10, 15))
    """
    for name, value in (("num_layers", num_layers), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    directions = 2 if bidirectional else 1
    keys = jax.random.split(key, (num_layers, directions))
    layers = []
    for k in range(num_layers):
        size = input_size if k == 0 else hidden_size * directions
        layers.append(
            tuple(init(keys[k, j], size, hidden_size, **cell_options) for j in range(directions))
        )
    return tuple(layers)


def stack_scan(
    step: Step,
    layers,
    xs: jax.Array,
    *,
    carry=None,
    lengths: jax.Array | None = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    key=None,
):
    """Runs a stack of cells over time: each layer is a :func:`jaxrnn.scan` per direction.

    The forward direction of every layer runs ``t = 0 .. T-1`` and the backward
    direction ``T-1 .. 0``; with ``lengths`` the backward direction of each
    sequence starts at its last valid step, never at the padding. Layer ``k + 1``
    reads ``concat([forward, backward], -1)`` of layer ``k``.

    Dropout (both kinds only when ``key`` is given; inverted, so nothing changes
    at evaluation):

    * ``dropout``: on the inputs of layers 1 .. L-1 (the outputs of all but the
      last layer), a fresh mask per element and step, as in PyTorch.
    * ``recurrent_dropout``: variational (Gal & Ghahramani 2016), one mask per
      sequence, layer and direction on ``H_{t-1}`` before the recurrent matmul,
      the same at every step. The step must accept a ``recurrent_mask`` keyword;
      the built-in steps do.

    Args:
        step: the cell's step, ``step(params, carry, x) -> (carry, y)``.
        layers: from :func:`stack_init` or :func:`jaxrnn.interop.from_torch`.
        xs: time-major inputs ``(T, *batch, d)``.
        carry: initial state, nested like ``layers`` (a tuple per layer of a
            carry per direction); ``None`` means zeros
            (:func:`jaxrnn.initial_carry` of ``layers``).
        lengths: optional integer array of shape ``batch`` (see :func:`jaxrnn.scan`).
        dropout: rate in ``[0, 1)`` between layers.
        recurrent_dropout: rate in ``[0, 1)`` on the recurrent state.
        key: PRNG key for the dropout masks; ``None`` disables dropout.

    Returns:
        ``(carry, ys)``: the final state of every layer and direction, nested like
        ``layers``, and the last layer's outputs ``(T, *batch, h * directions)``
        (zero past each sequence's length).

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> layers = jaxrnn.stack_init(jax.random.key(0), jaxrnn.lstm_init, 3, 5,
        ...                            num_layers=2, bidirectional=True)
        >>> carry, ys = jaxrnn.stack_scan(jaxrnn.lstm_step, layers, jnp.ones((7, 4, 3)),
        ...                               lengths=jnp.array([7, 5, 2, 1]))
        >>> ys.shape, carry[1][1].h.shape
        ((7, 4, 10), (4, 5))
    """
    num_layers, directions = _check_layers(layers)
    _check_rate(dropout, "dropout")
    _check_rate(recurrent_dropout, "recurrent_dropout")
    if carry is not None:
        _check_carry_nesting(carry, num_layers, directions)
    training = key is not None
    if training and recurrent_dropout > 0 and "recurrent_mask" not in _keywords(step):
        raise TypeError(
            f"step: recurrent_dropout needs a step that accepts a recurrent_mask keyword "
            f"(the built-in steps do); {getattr(step, '__name__', step)!r} does not"
        )
    keys = jax.random.split(key, (num_layers, directions + 1)) if training else None

    finals = []
    for k, layer in enumerate(layers):
        if training and dropout > 0 and k > 0:
            xs = _dropout(keys[k, directions], xs, dropout)
        outputs, states = [], []
        for j, params in enumerate(layer):
            c = None if carry is None else carry[k][j]
            cell = step
            if training and recurrent_dropout > 0:
                template = jax.tree.leaves(_hidden(params, c, xs))[0]
                mask = _dropout(keys[k, j], jnp.ones_like(template), recurrent_dropout)
                cell = functools.partial(step, recurrent_mask=mask)
            state, ys = scan(cell, params, xs, carry=c, lengths=lengths, reverse=j == 1)
            outputs.append(ys)
            states.append(state)
        xs = outputs[0] if directions == 1 else jnp.concatenate(outputs, axis=-1)
        finals.append(tuple(states))
    return tuple(finals), xs


def stack_step(step: Step, layers, carry, x: jax.Array):
    """One time step through every layer of a unidirectional stack.

    For streaming inference and sampling, where inputs arrive one step at a
    time: ``lax.scan(functools.partial(jaxrnn.stack_step, step, layers), carry, xs)``
    equals :func:`stack_scan` without lengths or dropout. A bidirectional stack
    needs the whole sequence, so it is refused.

    Args:
        step: the cell's step.
        layers: from :func:`stack_init`, one direction per layer.
        carry: nested like ``layers``; :func:`jaxrnn.initial_carry` of ``layers``
            gives zeros.
        x: one step's input, ``(*batch, d)``.

    Returns:
        ``(carry, y)``, ``y`` the last layer's output ``(*batch, h)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> layers = jaxrnn.stack_init(jax.random.key(0), jaxrnn.gru_init, 3, 5, num_layers=2)
        >>> carry = jaxrnn.initial_carry(layers, batch_shape=(4,))
        >>> carry, y = jaxrnn.stack_step(jaxrnn.gru_step, layers, carry, jnp.ones((4, 3)))
        >>> y.shape
        (4, 5)
    """
    num_layers, directions = _check_layers(layers)
    if directions != 1:
        raise ValueError(
            "layers: stack_step needs one direction per layer (a backward direction needs "
            f"the whole sequence), got {directions}"
        )
    _check_carry_nesting(carry, num_layers, 1)
    new_carry = []
    for (params,), (state,) in zip(layers, carry, strict=True):
        state, x = step(params, state, x)
        new_carry.append((state,))
    return tuple(new_carry), x


@initial_carry.register(tuple)
def _(layers, batch_shape=()):
    """Zeros for every layer and direction of a stack, nested like ``layers``."""
    _check_layers(layers)
    return tuple(tuple(initial_carry(p, batch_shape) for p in layer) for layer in layers)


def _hidden(params, carry, xs):
    """The array the recurrent mask multiplies: ``H_{t-1}``, ``(*batch, h)``."""
    if carry is None:
        carry = initial_carry(params, xs.shape[1:-1])
    return carry.h if hasattr(carry, "h") else carry


def _dropout(key, x, rate):
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)).astype(x.dtype)


def _keywords(step):
    try:
        return inspect.signature(step).parameters
    except (TypeError, ValueError):
        return {}


def _check_rate(rate, name):
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name}: expected a rate in [0, 1), got {rate!r}")


def _check_layers(layers):
    ok = isinstance(layers, tuple | list) and len(layers) > 0
    ok = ok and all(isinstance(layer, tuple | list) and len(layer) in (1, 2) for layer in layers)
    directions = {len(layer) for layer in layers} if ok else set()
    if not ok or len(directions) != 1:
        raise ValueError(
            "layers: expected a non-empty tuple with one entry per layer, each a tuple of "
            "1 or 2 params (one per direction) as made by jaxrnn.stack_init; got "
            f"{jax.tree.structure(layers, is_leaf=lambda x: not isinstance(x, tuple | list))}"
        )
    return len(layers), directions.pop()


def _check_carry_nesting(carry, num_layers, directions):
    ok = isinstance(carry, tuple | list) and len(carry) == num_layers
    ok = ok and all(isinstance(c, tuple | list) and len(c) == directions for c in carry)
    if not ok:
        if isinstance(carry, tuple | list):
            got = [len(c) if isinstance(c, tuple | list) else type(c).__name__ for c in carry]
            got = f"{len(carry)} layers with directions {got}"
        else:
            got = type(carry).__name__
        raise ValueError(
            f"carry: expected a tuple of {num_layers} layers, each a tuple of {directions} "
            f"direction carries (nested like layers), got {got}"
        )
