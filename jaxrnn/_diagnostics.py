"""How much gradient reaches each hidden state: the vanishing/exploding-gradient diagnostic."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrnn._cell import Cell, bind
from jaxrnn._scan import Step, scan


def hidden_grad_norms(
    step: Step | Cell | str,
    params,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    carry=None,
    lengths: jax.Array | None = None,
) -> jax.Array:
    r"""The norm of the gradient of a loss with respect to every hidden state, ``‖∂L/∂H_t‖``.

    Backpropagation through time sends the gradient from the loss back along the
    recurrence. With ``Y_t = H_t`` the step outputs, the total gradient reaching
    ``H_t`` (row vectors) is

    .. math::
        \frac{\partial L}{\partial H_t}
        = \frac{\partial L}{\partial Y_t}
        + \frac{\partial L}{\partial H_{t+1}} \frac{\partial H_{t+1}}{\partial H_t},

    so the part that comes from step ``s > t`` is a product of ``s - t``
    Jacobians. For the tanh RNN
    ``∂H_{t+1}/∂H_t = W_hhᵀ`` scaled by ``diag(1 - H_{t+1}²)`` (that is,
    ``g (∂H_{t+1}/∂H_t) = (g ⊙ (1 - H_{t+1}²)) W_hhᵀ``): it shrinks
    geometrically when ``‖W_hh‖ < 1`` (vanishing gradients) and can grow when
    ``‖W_hh‖ > 1`` (exploding gradients). The LSTM's and GRU's additive,
    gated state updates keep it from vanishing.

    It is computed exactly, by differentiating with respect to zero perturbations
    ``H_t ← H_t + δ_t`` added to each step's new hidden state (in the carry and
    the output alike) and taking ``‖∂L/∂δ_t‖₂``.

    Args:
        step: ``step(params, carry, x) -> (carry, y)`` whose output ``y`` is its
            hidden state (the built-in steps, or a user's, where the carry is the
            hidden state or :attr:`jaxrnn.Cell.hidden` names its field), or a
            :class:`jaxrnn.Cell` or a registered cell's name.
        params: the step's parameters.
        xs: inputs, time-major ``(T, *batch, d)``.
        loss_fn: ``loss_fn(ys) -> scalar``, with ``ys (T, *batch, h)`` the step
            outputs (for example a readout of ``ys[-1]`` and a squared error).
        carry: the initial carry; ``None`` means zeros.
        lengths: optional valid lengths ``batch``, as in :func:`jaxrnn.scan`;
            padded steps get zero gradient.

    Returns:
        ``‖∂L/∂H_t‖₂`` for every step and sequence, shape ``(T, *batch)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.rnn_init(jax.random.key(0), 2, 8)
        >>> xs = jax.random.uniform(jax.random.key(1), (30, 2))  # (T, d), no batch axis
        >>> norms = jaxrnn.hidden_grad_norms(jaxrnn.rnn_step, p, xs,
        ...                                  lambda ys: jnp.sum(ys[-1]))
        >>> norms.shape, bool(norms[0] < norms[-1])  # the gradient fades going back in time
        ((30,), True)
    """
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(f"xs: expected a time-major array (T, *batch, d), got shape {xs.shape}")
    batch = tuple(xs.shape[1:-1])
    bound = bind(step, params)
    cell, step = bound.cell, bound.step
    if carry is None:
        carry = cell.initial_carry(params, batch)
    hidden = cell.hidden_state(carry)
    d = xs.shape[-1]
    deltas = jnp.zeros((xs.shape[0], *hidden.shape), hidden.dtype)
    if hidden.shape[: len(batch)] != batch:
        raise ValueError(
            f"carry: the hidden state must have the batch axes {batch} of xs leading, "
            f"got shape {hidden.shape}"
        )

    def perturbed(p, c, x_and_delta):
        x, delta = x_and_delta[..., :d], x_and_delta[..., d:]
        c, y = step(p, c, x)
        h = cell.hidden_state(c)
        if jnp.shape(y) != h.shape:
            raise ValueError(
                f"step: its output y {jnp.shape(y)} must be its hidden state {h.shape}; "
                "hidden_grad_norms perturbs both alike"
            )
        return cell.with_hidden_state(c, h + delta), y + delta

    def loss_of(deltas):
        inputs = jnp.concatenate([xs, deltas.astype(xs.dtype)], axis=-1)
        # Wrapping params hides their input size from scan's check of the widened inputs.
        _, ys = scan(
            lambda wrapped, c, x: perturbed(wrapped[0], c, x),
            (params,),
            inputs,
            carry=carry,
            lengths=lengths,
        )
        return loss_fn(ys)

    grads = jax.grad(loss_of)(deltas)
    return jnp.linalg.norm(grads, axis=-1)
