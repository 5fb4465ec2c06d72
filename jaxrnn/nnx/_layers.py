"""NNX sequence layers: deep, bidirectional stacks of any cell over batch-major sequences."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxrnn import _checks
from jaxrnn._batch_major import check_layer_options, precision, run_layers, training_rates
from jaxrnn._cell import cell_of, get_cell
from jaxrnn._stack import stack_init, stack_initial_carry
from jaxrnn.nnx._variables import unwrap, wrap


class Recurrent(nnx.Module):
    """A stack of any :class:`jaxrnn.Cell`: ``num_layers`` layers, optionally bidirectional.

    ``Recurrent(cell, in_features, hidden_features, *, num_layers=1,
    bidirectional=False, dropout=0.0, recurrent_dropout=0.0, zoneout=0.0,
    time_major=False, unroll=1, remat=False, dtype=None, param_dtype=float32,
    layers=None, rngs=None, **cell_options)``: ``cell`` is
    a registered name (``"lstm"``) or a :class:`jaxrnn.Cell`, and
    ``cell_options`` go to its ``init``. ``dtype`` and ``param_dtype`` have
    Flax's meaning: the compute dtype of :func:`jaxrnn.stack_scan` (``None``: the
    params'; bfloat16 keeps the carry in float32) and the params' own dtype.

    A thin holder of the functional ``layers``: the call is :func:`jaxrnn.stack_scan`
    on batch-major inputs, with ``unroll`` and ``remat`` passed to every layer.
    ``layers=`` uses given parameters instead of initialising (see
    :meth:`from_layers`). Dropout follows NNX's ``model.train()`` /
    ``model.eval()`` switch and takes its key from the ``rngs`` passed to the call.
    Zoneout (see :func:`jaxrnn.stack_scan`) samples its masks in training and
    uses their expectation after ``model.eval()``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxrnn
        >>> model = jaxrnn.nnx.Recurrent("gru", 3, 8, num_layers=2, bidirectional=True,
        ...                              reset_after=True, rngs=nnx.Rngs(0))
        >>> ys = model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 3, 1]))  # (B, T, d)
        >>> ys.shape
        (4, 10, 16)
    """

    def __init__(
        self,
        cell,
        in_features,
        hidden_features,
        *,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
        recurrent_dropout=0.0,
        zoneout=0.0,
        time_major=False,
        unroll=1,
        remat=False,
        dtype=None,
        param_dtype=jnp.float32,
        layers=None,
        rngs=None,
        **cell_options,
    ):
        self.cell = get_cell(cell)
        check_layer_options(self.cell, dropout, recurrent_dropout, zoneout)
        self.dtype, init_options = precision(self.cell, dtype, param_dtype)
        cell_options = self.cell.with_options(cell_options, type(self).__name__, ("dtype",))
        cell_options |= init_options
        if layers is None:
            if rngs is None:
                raise ValueError("rngs: expected nnx.Rngs to initialise the parameters, got None")
            layers = stack_init(
                rngs.params(),
                self.cell,
                in_features,
                hidden_features,
                num_layers=num_layers,
                bidirectional=bidirectional,
                **cell_options,
            )
        _checks.stack_shape(layers)
        self.layers = wrap(tuple(tuple(layer) for layer in layers))
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.zoneout = zoneout
        self.time_major = _checks.boolean(time_major, "time_major")
        self.unroll = unroll
        self.remat = _checks.boolean(remat, "remat")
        self.deterministic = False  # flipped by nnx's model.train() / model.eval()

    @classmethod
    def from_layers(cls, layers, *, dropout=0.0, recurrent_dropout=0.0, **options):
        """A module holding ``layers`` (e.g. from :func:`jaxrnn.interop.from_torch`).

        ``options`` are the other constructor keywords (``zoneout``, ``time_major``,
        ``unroll``, ``remat``). The cell is the one registered for the params' type.
        """
        _checks.stack_shape(layers)
        return Recurrent(
            cell_of(layers[0][0]),
            None,
            None,
            layers=layers,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            **options,
        )

    def to_layers(self):
        """The module's parameters as the functional ``layers`` of :func:`jaxrnn.stack_scan`."""
        return unwrap(self.layers)

    def initial_carry(self, batch_shape=()):
        """Zero carry for every layer and direction, nested like ``layers``."""
        return stack_initial_carry(self.cell, self.to_layers(), batch_shape)

    def __call__(
        self, inputs, *, lengths=None, resets=None, carry=None, return_carry=False, rngs=None
    ):
        """Runs the stack.

        Args:
            inputs: ``(*batch, T, d)``, or ``(T, *batch, d)`` with ``time_major=True``.
            lengths: optional integer array of shape ``batch``.
            resets: optional bool array shaped like ``inputs`` without its last
                axis (for a ConvLSTM, without its spatial axes either), marking where
                a new episode starts (see :func:`jaxrnn.stack_scan`).
            carry: optional initial state, nested like :meth:`to_layers`.
            return_carry: also return the final state of every layer and direction.
            rngs: ``nnx.Rngs`` with a ``dropout`` stream, needed for dropout and
                zoneout in training mode; no key is stored in the module.

        Returns:
            ``ys`` of shape ``(*batch, T, h * directions)`` (``h`` is the LSTM's
            ``proj_size`` where it has one; zero past each length),
            or ``(carry, ys)`` with ``return_carry=True``.
        """
        key = None
        zoneout = self.zoneout
        if not self.deterministic and (
            self.dropout > 0 or self.recurrent_dropout > 0 or zoneout > 0
        ):
            if rngs is None:
                rates = training_rates(self.dropout, self.recurrent_dropout, zoneout)
                raise ValueError(
                    f"rngs: {rates} in training mode need nnx.Rngs(dropout=...) passed to the "
                    "call, got None; call model.eval() to run without dropout"
                )
            key = rngs.dropout()
        return run_layers(
            self.cell,
            self.to_layers(),
            inputs,
            time_major=self.time_major,
            lengths=lengths,
            resets=resets,
            carry=carry,
            return_carry=return_carry,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            zoneout=zoneout,
            key=key,
            unroll=self.unroll,
            remat=self.remat,
            dtype=self.dtype,
        )


class _Named(Recurrent):
    cell_name: str

    def __init__(self, in_features, hidden_features, **kwargs):
        super().__init__(self.cell_name, in_features, hidden_features, **kwargs)

    @classmethod
    def from_layers(cls, layers, **options):
        """A module holding ``layers`` (e.g. from :func:`jaxrnn.interop.from_torch`)."""
        _checks.stack_shape(layers)
        if cell_of(layers[0][0]) is not get_cell(cls.cell_name):
            raise TypeError(
                f"layers: {cls.__name__} holds {cls.cell_name!r} params, got "
                f"{type(layers[0][0]).__name__}"
            )
        return cls(None, None, layers=layers, **options)


_DOC = """{title} layer: ``Recurrent({kind!r}, ...)``.

    ``{cls}(in_features, hidden_features, *, num_layers=1, bidirectional=False,
    dropout=0.0, recurrent_dropout=0.0, zoneout=0.0, time_major=False, unroll=1,
    remat=False, dtype=None, param_dtype=float32, layers=None, rngs=None,
    **cell_options)``, with the cell options of
    :func:`jaxrnn.{kind}_init`; the cell computes :func:`jaxrnn.{kind}_step`.
    See :class:`Recurrent`.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxrnn
        >>> model = jaxrnn.nnx.{cls}(3, 8, bidirectional=True, rngs=nnx.Rngs(0))
        >>> ys = model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 3, 1]))  # (B, T, d)
        >>> ys.shape
        (4, 10, 16)
"""


class RNN(_Named):
    __doc__ = _DOC.format(title="Vanilla RNN", kind="rnn", cls="RNN")
    cell_name = "rnn"


class LSTM(_Named):
    __doc__ = _DOC.format(title="LSTM", kind="lstm", cls="LSTM")
    cell_name = "lstm"


class GRU(_Named):
    __doc__ = _DOC.format(title="GRU", kind="gru", cls="GRU")
    cell_name = "gru"
