"""Deep and bidirectional stacks of any cell, as pure functions."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _precision, _sharding
from jaxrnn._carry import initial_carry
from jaxrnn._cell import Cell, bind, get_cell, registered_cell
from jaxrnn._masking import valid_steps
from jaxrnn._scan import Step, scan, scan_bound
from jaxrnn._zoneout import expected_step, training_step


def stack_init(
    key,
    init: Callable | Cell | str,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    **cell_options,
):
    """Initialises a stack of cells: ``num_layers`` layers, one or two directions each.

    Layer 0 reads ``input_size`` features; layer ``k + 1`` reads layer ``k``'s
    outputs with both directions concatenated (forward first), as in PyTorch:
    ``hidden_size`` per direction, or the cell's ``output_size`` where it says
    (:class:`jaxrnn.Cell`; an LSTM with ``proj_size``).

    Args:
        key: a PRNG key; every layer and direction gets its own.
        init: a :class:`jaxrnn.Cell` or a registered cell's name, or a cell
            initialiser ``init(key, input_size, hidden_size, **cell_options)``,
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
    _checks.positive_int(num_layers, "num_layers")
    _checks.positive_int(hidden_size, "hidden_size")
    directions = 2 if _checks.boolean(bidirectional, "bidirectional") else 1
    cell = get_cell(init) if isinstance(init, str | Cell) else None
    init = cell.init if cell is not None else init
    keys = jax.random.split(key, (num_layers, directions))
    layers, size = [], input_size
    for k in range(num_layers):
        layer = tuple(
            init(keys[k, j], size, hidden_size, **cell_options) for j in range(directions)
        )
        layers.append(layer)
        size = sum(_output_size(cell or registered_cell(p), p, hidden_size) for p in layer)
    return tuple(layers)


def _output_size(cell: Cell | None, params, hidden_size: int) -> int:
    if cell is None or cell.output_size is None:
        return hidden_size
    return cell.output_size(params)


def stack_scan(
    step: Step | Cell | str,
    layers,
    xs: jax.Array,
    *,
    carry=None,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    key=None,
    unroll: int | bool = 1,
    remat: bool = False,
    gradient: str = "auto",
    dtype=None,
    carry_dtype=None,
):
    """Runs a stack of cells over time: each layer is a :func:`jaxrnn.scan` per direction.

    The forward direction of every layer runs ``t = 0 .. T-1`` and the backward
    direction ``T-1 .. 0``; with ``lengths`` the backward direction of each
    sequence starts at its last valid step, never at the padding. Layer ``k + 1``
    reads ``concat([forward, backward], -1)`` of layer ``k``.

    The two directions of a layer are two loops, each with the cell's scan rule.
    Running them as one loop (the backward direction on its inputs reversed
    within each length, both directions' matmuls batched or side by side in
    each step) gave the same values but measured no faster on XLA:CPU: within
    4% of the two loops for the forward pass, 3-13% slower in training
    (``benchmarks/README.md``).

    Dropout (both kinds only when ``key`` is given; inverted, so nothing changes
    at evaluation):

    * ``dropout``: on the inputs of layers 1 .. L-1 (the outputs of all but the
      last layer), a fresh mask per element and step, as in PyTorch.
    * ``recurrent_dropout``: variational (Gal & Ghahramani 2016), one mask per
      sequence, layer and direction on ``H_{t-1}`` before the recurrent matmul,
      the same at every step. The step must accept a ``recurrent_mask`` keyword;
      the built-in steps do, and keep their fused gradient with it.

    Zoneout (Krueger et al. 2017), unlike dropout, acts in evaluation too:

    * ``zoneout = p``: with a ``key``, each unit of every carry leaf (``h``, and
      ``c`` with a mask of its own) keeps its previous value with probability
      ``p``, a fresh mask per step, sequence, layer and direction:
      ``H_t = M_t ⊙ H_{t-1} + (1 - M_t) ⊙ H~_t``. Without a key, the expectation
      ``H_t = p H_{t-1} + (1 - p) H~_t``. Each layer's output is its zoned hidden
      state. The step so wrapped runs the plain ``lax.scan`` (no fused gradient),
      and training draws one mask array the size of the layer's carries over
      all steps.

    Args:
        step: the cell's step, ``step(params, carry, x) -> (carry, y)``, or a
            :class:`jaxrnn.Cell` or a registered cell's name.
        layers: from :func:`stack_init` or :func:`jaxrnn.interop.from_torch`.
        xs: time-major inputs ``(T, *batch, d)``.
        carry: initial state, nested like ``layers`` (a tuple per layer of a
            carry per direction); ``None`` means zeros
            (:func:`jaxrnn.initial_carry` of ``layers``).
        lengths: optional integer array of shape ``batch`` (see :func:`jaxrnn.scan`).
        resets: optional bool array ``(T, *batch)`` marking the first step of
            each new episode packed into a sequence: every layer's forward
            direction restarts from its initial carry there, and its backward
            direction at the step before, so each episode is seen on its own.
        dropout: rate in ``[0, 1)`` between layers.
        recurrent_dropout: rate in ``[0, 1)`` on the recurrent state.
        zoneout: rate in ``[0, 1)``, the probability that a unit keeps its value.
        key: PRNG key for the dropout and zoneout masks; ``None`` disables dropout
            and makes zoneout its expectation.
        unroll, remat, gradient: passed to :func:`jaxrnn.scan` for every layer
            and direction.
        dtype, carry_dtype: the mixed-precision policy of :func:`jaxrnn.scan`,
            for every layer: each layer reads and returns ``dtype`` arrays, its
            carry is ``carry_dtype`` (float32 by default with a narrower ``dtype``).

    Returns:
        ``(carry, ys)``: the final state of every layer and direction, nested like
        ``layers``, and the last layer's outputs ``(T, *batch, h * directions)``
        (``proj_size * directions`` for a projected LSTM; zero past each
        sequence's length).

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> layers = jaxrnn.stack_init(jax.random.key(0), jaxrnn.lstm_init, 3, 5,
        ...                            num_layers=2, bidirectional=True)
        >>> carry, ys = jaxrnn.stack_scan(jaxrnn.lstm_step, layers, jnp.ones((7, 4, 3)),
        ...                               lengths=jnp.array([7, 5, 2, 1]))
        >>> ys.shape, carry[1][1].h.shape
        ((7, 4, 10), (4, 5))
    """
    num_layers, directions = _checks.stack_shape(layers)
    _checks.rate(dropout, "dropout")
    _checks.rate(recurrent_dropout, "recurrent_dropout")
    _checks.rate(zoneout, "zoneout")
    if carry is not None:
        _checks.carry_nesting(carry, num_layers, directions)
    bound = bind(step, layers[0][0])
    training = key is not None
    if training and recurrent_dropout > 0:
        name = getattr(bound.step, "__name__", type(bound.step).__name__)
        check_recurrent_mask(bound.step_options, f"the step {name!r}")
    keys = jax.random.split(key, (num_layers, directions + 1)) if training else None
    dtype, carry_dtype = _precision.policy(dtype, carry_dtype)
    if dtype is not None:  # once here, for the zoned steps, which close over params
        layers = _precision.cast_floating(layers, dtype)
        xs = _precision.cast_floating(_checks.as_floating(xs, "xs"), dtype)
    resets_by_direction = _direction_resets(resets, lengths, xs) if resets is not None else None

    finals = []
    for k, layer in enumerate(layers):
        if training and dropout > 0 and k > 0:
            xs = _dropout(keys[k, directions], xs, dropout)
        outputs, states = [], []
        for j, params in enumerate(layer):
            batch = xs.shape[1:-1]
            c = bound.cell.initial_carry(params, batch) if carry is None else carry[k][j]
            if carry_dtype is not None:  # before a recurrent mask is made like it
                c = _precision.cast_floating(c, carry_dtype)
            c = _sharding.with_batch(c, xs, len(batch))
            cell = bound
            if training and recurrent_dropout > 0:
                template = bound.cell.hidden_state(c)
                mask = _dropout(keys[k, j], jnp.ones_like(template), recurrent_dropout)
                cell = bound.with_options(recurrent_mask=mask)
            options = dict(
                carry=c,
                lengths=lengths,
                resets=None if resets is None else resets_by_direction[j],
                reverse=j == 1,
                unroll=unroll,
                remat=remat,
                gradient=gradient,
                dtype=dtype,
                carry_dtype=carry_dtype,
            )
            hidden = bound.cell.hidden_state
            if zoneout > 0 and training:
                _checks.check_batch_leading(c, batch, "carry", "zoneout")
                key_z = jax.random.fold_in(keys[k, j], 1)
                zoned, inputs = training_step(cell.step, params, zoneout, key_z, c, xs, hidden)
                # params are closed over by the step; the inputs carry the masks too
                state, ys = scan(zoned, None, inputs, **options)
            elif zoneout > 0:
                state, ys = scan(expected_step(cell.step, zoneout, hidden), params, xs, **options)
            else:
                state, ys = scan_bound(cell, params, xs, **options)
            outputs.append(ys)
            states.append(state)
        xs = outputs[0] if directions == 1 else jnp.concatenate(outputs, axis=-1)
        finals.append(tuple(states))
    return tuple(finals), xs


def _direction_resets(resets, lengths, xs):
    """Episode starts as resets of the forward direction, and of the backward one.

    Running backwards, an episode that starts at ``t`` ends the one that came
    before, whose backward pass must start afresh at ``t - 1``.
    """
    resets = jnp.asarray(resets)
    if resets.dtype != jnp.bool_:
        raise TypeError(f"resets: expected a bool array, got dtype {resets.dtype}")
    _checks.check_shape(resets, xs.shape[:-1], "resets", f"the (T, *batch) axes of xs {xs.shape}")
    if lengths is not None:
        resets = resets & valid_steps(lengths, xs.shape[0], xs.shape[1:-1], xs.shape)
    backward = jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])])
    return resets, backward


def stack_step(step: Step | Cell | str, layers, carry, x: jax.Array):
    """One time step through every layer of a unidirectional stack.

    For streaming inference and sampling, where inputs arrive one step at a
    time: ``lax.scan(functools.partial(jaxrnn.stack_step, step, layers), carry, xs)``
    equals :func:`stack_scan` without lengths or dropout. A bidirectional stack
    needs the whole sequence, so it is refused.

    Args:
        step: the cell's step, or a :class:`jaxrnn.Cell` or a registered cell's name.
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
    num_layers, directions = _checks.stack_shape(layers)
    if directions != 1:
        raise ValueError(
            "layers: stack_step needs one direction per layer (a backward direction needs "
            f"the whole sequence), got {directions}"
        )
    _checks.carry_nesting(carry, num_layers, 1)
    step = bind(step, layers[0][0]).step
    new_carry = []
    for (params,), (state,) in zip(layers, carry, strict=True):
        state, x = step(params, state, x)
        new_carry.append((state,))
    return tuple(new_carry), x


def stack_initial_carry(step: Step | Cell | str, layers, batch_shape=()):
    """Zeros for every layer and direction of a stack of ``step``'s cell, nested like ``layers``.

    As :func:`jaxrnn.initial_carry` of ``layers``, for a cell given as a value
    (which may be unregistered).
    """
    _checks.stack_shape(layers)
    cell = bind(step, layers[0][0]).cell
    return tuple(tuple(cell.initial_carry(p, batch_shape) for p in layer) for layer in layers)


@initial_carry.register(tuple)
def _(layers, batch_shape=()):
    """Zeros for every layer and direction of a stack, nested like ``layers``."""
    if not all(_checks.is_sequence(layer) for layer in layers):
        # Not a stack: a cell whose params are a plain tuple, which nobody registered.
        raise TypeError(
            "params: no initial carry is known for a plain tuple; pass carry= explicitly, or "
            "give the cell a params class of its own and register it with jaxrnn.register_cell"
        )
    _checks.stack_shape(layers)
    return tuple(tuple(initial_carry(p, batch_shape) for p in layer) for layer in layers)


def _dropout(key, x, rate):
    keep = jax.random.bernoulli(
        key, 1.0 - rate, x.shape, **_sharding.out_sharding(x, _sharding.parts(x))
    )
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)).astype(x.dtype)


def check_recurrent_mask(step_options, what: str) -> None:
    """Recurrent dropout needs a step that takes a ``recurrent_mask`` keyword."""
    if "recurrent_mask" not in step_options:
        raise TypeError(
            f"recurrent_dropout: needs a step that takes a recurrent_mask keyword; {what} does "
            f"not (its step options: {', '.join(step_options) or 'none'})"
        )
