"""The convolutional LSTM (Shi et al. 2015): the LSTM with both matmuls made convolutions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _checks, _initializers
from jaxrnn._carry import LSTMState, check_lstm_state, zeros_hidden
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, RecurrentWeights, bias, pytree_dataclass
from jaxrnn._precision import like, working

_SPATIAL = "HWD"  # names of up to three spatial axes, for lax's dimension numbers


@pytree_dataclass
class ConvLSTMParams(RecurrentWeights):
    """Parameters of a ConvLSTM cell, gates fused on the output channels in the order i, f, g, o.

    The kernels have Flax's ``Conv`` layout, ``(*kernel_size, in, out)``. The
    sizes are channels: ``input_size`` is ``C_in``, ``hidden_size`` is ``C_h``.

    Attributes:
        w_x: input kernel, shape ``(*kernel_size, C_in, 4 C_h)``.
        w_h: recurrent kernel, shape ``(*kernel_size, C_h, 4 C_h)``.
        b: bias, shape ``(4 C_h,)``. Flax's two conv biases (and its built-in
            +1 on the forget gate) sum into it.
    """

    w_x: jax.Array
    w_h: jax.Array
    b: jax.Array

    @property
    def kernel_size(self) -> tuple[int, ...]:
        """The spatial extent of the kernels, one entry per spatial axis."""
        return tuple(self.w_x.shape[:-2])

    @property
    def num_feature_axes(self) -> int:
        """How many trailing axes of one step's input are not batch (spatial and channels)."""
        return len(self.kernel_size) + 1

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        rank = getattr(self.w_x, "ndim", 3)  # check_params names a w_x that is no array
        if not 3 <= rank <= 5:
            raise ValueError(
                f"params.w_x: expected a kernel of shape (*kernel_size, C_in, 4 C_h) with 1 to 3 "
                f"spatial axes, got shape {tuple(self.w_x.shape)}"
            )

        def shapes():
            k, c_in, c_h = self.kernel_size, self.input_size, self.hidden_size
            return {"w_x": (*k, c_in, 4 * c_h), "w_h": (*k, c_h, 4 * c_h), "b": (4 * c_h,)}

        _checks.check_params(self, {"w_x": rank, "w_h": rank, "b": 1}, shapes)


def check_kernel_size(kernel_size) -> tuple[int, ...]:
    """``kernel_size`` as a tuple of 1 to 3 positive ints, else an error naming it."""
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        raise TypeError(
            f"kernel_size: expected a tuple with one size per spatial axis, e.g. ({kernel_size},) "
            f"for 1-D or ({kernel_size}, {kernel_size}) for 2-D, got {kernel_size!r}"
        )
    ok = isinstance(kernel_size, tuple | list) and 1 <= len(kernel_size) <= 3
    ok = ok and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in kernel_size)
    if not ok:
        raise ValueError(
            "kernel_size: expected a tuple of 1 to 3 positive ints (one per spatial axis), "
            f"got {kernel_size!r}"
        )
    return tuple(kernel_size)


def conv_lstm_init(
    key,
    in_channels: int,
    hidden_channels: int,
    kernel_size,
    *,
    forget_bias=1.0,
    dtype=jnp.float32,
):
    """Initialises a ConvLSTM cell over ``len(kernel_size)`` (1, 2 or 3) spatial axes.

    Both kernels are LeCun normal over their fan-in ``prod(kernel_size) * channels``
    (Flax's ``Conv`` default); the forget-gate bias starts at ``forget_bias``
    (1.0, as Flax's ConvLSTMCell adds), the other biases at 0.

    Args:
        key: a PRNG key.
        in_channels: ``C_in``, the input's last axis.
        hidden_channels: ``C_h``, the carry's last axis.
        kernel_size: a tuple with one size per spatial axis, e.g. ``(3, 3)``.
            Even sizes are accepted: 'SAME' padding then puts the extra row
            after (``(k - 1) // 2`` before, ``k // 2`` after), as ``lax.conv``
            and Flax do.
        forget_bias: initial bias of the forget gate.
        dtype: a floating-point dtype for the params.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.conv_lstm_init(jax.random.key(0), 3, 8, (3, 3))
        >>> p.w_x.shape, p.w_h.shape, p.b.shape, p.input_size, p.hidden_size
        ((3, 3, 3, 32), (3, 3, 8, 32), (32,), 3, 8)
    """
    _initializers.check_sizes(key, in_channels, hidden_channels)
    kernel_size = check_kernel_size(kernel_size)
    dtype = _checks.float_dtype(dtype)
    _checks.finite_number(forget_bias, "forget_bias")
    kx, kh = jax.random.split(key)
    init = jax.nn.initializers.lecun_normal(in_axis=-2, out_axis=-1)
    working = jnp.promote_types(dtype, jnp.float32)  # draw in at least float32, then cast
    out = 4 * hidden_channels
    return ConvLSTMParams(
        w_x=init(kx, (*kernel_size, in_channels, out), working).astype(dtype),
        w_h=init(kh, (*kernel_size, hidden_channels, out), working).astype(dtype),
        b=jnp.zeros((4, hidden_channels), dtype).at[1].set(forget_bias).reshape(-1),
    )


def conv_lstm_step(params: ConvLSTMParams, carry: LSTMState, x: jax.Array, *, recurrent_mask=None):
    r"""One step of the ConvLSTM: :func:`jaxrnn.lstm_step` with convolutions for matmuls.

    .. math::
        I_t &= \sigma(W_{xi} * X_t + W_{hi} * H_{t-1} + b_i) \\
        F_t &= \sigma(W_{xf} * X_t + W_{hf} * H_{t-1} + b_f) \\
        \tilde C_t &= \tanh(W_{xc} * X_t + W_{hc} * H_{t-1} + b_c) \\
        O_t &= \sigma(W_{xo} * X_t + W_{ho} * H_{t-1} + b_o) \\
        C_t &= F_t \odot C_{t-1} + I_t \odot \tilde C_t \\
        H_t &= O_t \odot \tanh(C_t)

    where ``*`` is a stride-1, 'SAME'-padded convolution (cross-correlation, as
    ``lax.conv`` and Flax's ``Conv``) over the spatial axes. Shi et al. also
    have peephole terms ``W_c ⊙ C``; like Flax, this cell has none.

    The spatial axes sit between the batch axes and the channels, so for
    :func:`jaxrnn.scan` they are batch-like: ``xs (T, *batch, *spatial, C_in)``,
    ``jaxrnn.initial_carry(params, (*batch, *spatial))``, and ``lengths`` and
    ``resets`` of shape ``(*batch, *spatial)`` (broadcast a per-sequence array
    over the spatial axes).

    Args:
        params: a :class:`ConvLSTMParams`.
        carry: an :class:`jaxrnn.LSTMState` ``(h, c)``, each ``(*batch, *spatial, C_h)``.
        x: ``X_t``, shape ``(*batch, *spatial, C_in)``, any number of batch axes.
        recurrent_mask: optional ``(*batch, *spatial, C_h)`` multiplier on
            ``H_{t-1}`` before its convolution (recurrent dropout).

    Returns:
        ``(LSTMState(H_t, C_t), H_t)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.conv_lstm_init(jax.random.key(0), 3, 8, (3, 3))
        >>> xs = jnp.ones((5, 2, 16, 16, 3))  # (T, B, H, W, C_in)
        >>> carry, ys = jaxrnn.scan(jaxrnn.conv_lstm_step, p, xs)
        >>> ys.shape, carry.c.shape
        ((5, 2, 16, 16, 8), (2, 16, 16, 8))
    """
    _checks.params_type(params, ConvLSTMParams, "conv_lstm_step")
    params.check()
    check_lstm_state(carry, "a ConvLSTM", "(*batch, *spatial, C_h)")
    x = _checks.as_floating(x, "x")
    spatial = len(params.kernel_size)
    if x.ndim < spatial + 1:
        raise ValueError(
            f"x: expected shape (*batch, *spatial, C_in) with {spatial} spatial axes (the "
            f"kernel's), got shape {tuple(x.shape)}"
        )
    x = _checks.check_step_args(
        x,
        {"carry.h": carry.h, "carry.c": carry.c},
        params.input_size,
        params.hidden_size,
        params.w_h.dtype,
    )
    h_in = _checks.apply_recurrent_mask(carry.h, recurrent_mask)
    gates = _conv(x, params.w_x) + _conv(h_in, params.w_h) + bias(params.b, x)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * carry.c + i * g
    state = like(LSTMState(h=o * jnp.tanh(c), c=c), carry)
    return state, state.h


def _conv(x, w):
    """'SAME', stride-1 convolution of ``x (*batch, *spatial, C)`` with ``w (*k, C, O)``."""
    spatial = w.ndim - 2
    batch, rest = x.shape[: x.ndim - spatial - 1], x.shape[x.ndim - spatial - 1 :]
    axes = _SPATIAL[:spatial]
    lhs = x.reshape((math.prod(batch), *rest)).astype(w.dtype)
    out = lax.conv_general_dilated(
        lhs,
        w,
        preferred_element_type=working(w.dtype),
        window_strides=(1,) * spatial,
        padding="SAME",
        dimension_numbers=(f"N{axes}C", f"{axes}IO", f"N{axes}C"),
    )
    return out.reshape((*batch, *out.shape[1:]))


def _cell_init(
    key, input_size, hidden_size, *, kernel_size=None, forget_bias=1.0, dtype=jnp.float32
):
    """:func:`conv_lstm_init` with ``kernel_size`` as a keyword, the form a :class:`Cell` takes."""
    return conv_lstm_init(
        key, input_size, hidden_size, kernel_size, forget_bias=forget_bias, dtype=dtype
    )


def _initial_carry(params, batch_shape=()):
    zeros = zeros_hidden(params, batch_shape)
    return LSTMState(h=zeros, c=zeros)


# ``batch_shape`` of the carry includes the spatial axes: (*batch, *spatial).
CONV_LSTM = register_cell(
    Cell(
        name="conv_lstm",
        init=_cell_init,
        step=conv_lstm_step,
        params_type=ConvLSTMParams,
        initial_carry=_initial_carry,
        hidden="h",
        feature_axes=lambda params: params.num_feature_axes,
        **SIZES,
    )
)
