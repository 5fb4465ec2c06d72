"""NNX sequence layers: deep, bidirectional stacks over batch-major sequences."""

from __future__ import annotations

from flax import nnx

from jaxrnn import _layer
from jaxrnn._carry import initial_carry
from jaxrnn._layer import CELLS, check_rates, run_layers
from jaxrnn._stack import _check_layers, stack_init
from jaxrnn.nnx._variables import unwrap, wrap


class _Layer(nnx.Module):
    kind: str

    def __init__(
        self,
        in_features,
        hidden_features,
        *,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
        recurrent_dropout=0.0,
        time_major=False,
        layers=None,
        rngs=None,
        **cell_options,
    ):
        check_rates(dropout, recurrent_dropout)
        init, _ = CELLS[self.kind]
        cell_options = _layer.cell_options(self.kind, cell_options, type(self).__name__)
        if layers is None:
            if rngs is None:
                raise ValueError("rngs: expected nnx.Rngs to initialise the parameters, got None")
            layers = stack_init(
                rngs.params(),
                init,
                in_features,
                hidden_features,
                num_layers=num_layers,
                bidirectional=bidirectional,
                **cell_options,
            )
        self.layers = wrap(tuple(tuple(layer) for layer in layers))
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.time_major = time_major
        self.deterministic = False  # flipped by nnx's model.train() / model.eval()

    def to_layers(self):
        """The module's parameters as the functional ``layers`` of :func:`jaxrnn.stack_scan`."""
        return unwrap(self.layers)

    @classmethod
    def from_layers(cls, layers, *, dropout=0.0, recurrent_dropout=0.0, time_major=False):
        """A module holding ``layers`` (e.g. from :func:`jaxrnn.interop.from_torch`)."""
        num_layers, directions = _check_layers(layers)
        first = layers[0][0]
        return cls(
            first.input_size,
            first.hidden_size,
            num_layers=num_layers,
            bidirectional=directions == 2,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            time_major=time_major,
            layers=layers,
        )

    def initial_carry(self, batch_shape=()):
        """Zero carry for every layer and direction, nested like ``layers``."""
        return initial_carry(self.to_layers(), batch_shape)

    def __call__(self, inputs, *, lengths=None, carry=None, return_carry=False, rngs=None):
        """Runs the stack.

        Args:
            inputs: ``(*batch, T, d)``, or ``(T, *batch, d)`` with ``time_major=True``.
            lengths: optional integer array of shape ``batch``.
            carry: optional initial state, nested like :meth:`to_layers`.
            return_carry: also return the final state of every layer and direction.
            rngs: ``nnx.Rngs`` with a ``dropout`` stream, needed for dropout in
                training mode; no key is stored in the module.

        Returns:
            ``ys`` of shape ``(*batch, T, h * directions)`` (zero past each length),
            or ``(carry, ys)`` with ``return_carry=True``.
        """
        key = None
        if not self.deterministic and (self.dropout > 0 or self.recurrent_dropout > 0):
            if rngs is None:
                raise ValueError(
                    f"rngs: dropout={self.dropout} and recurrent_dropout={self.recurrent_dropout} "
                    "in training mode need nnx.Rngs(dropout=...) passed to the call, got None; "
                    "call model.eval() to run without dropout"
                )
            key = rngs.dropout()
        return run_layers(
            CELLS[self.kind][1],
            self.to_layers(),
            inputs,
            time_major=self.time_major,
            lengths=lengths,
            carry=carry,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            key=key,
            return_carry=return_carry,
        )


_DOC = """{title} layer: ``num_layers`` stacked, optionally bidirectional.

    ``{cls}(in_features, hidden_features, *, num_layers=1, bidirectional=False,
    dropout=0.0, recurrent_dropout=0.0, time_major=False, layers=None, rngs=None,
    **cell_options)``, with the cell options ``{options}`` of
    :func:`jaxrnn.{kind}_init`; the cell computes :func:`jaxrnn.{kind}_step`.

    A thin holder of the functional ``layers``: the call is :func:`jaxrnn.stack_scan`
    on batch-major inputs. ``layers=`` uses given parameters instead of
    initialising (see :meth:`from_layers`). Dropout follows NNX's ``model.train()``
    / ``model.eval()`` switch and takes its key from the ``rngs`` passed to the call.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxrnn
        >>> model = jaxrnn.nnx.{cls}(3, 8, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
        >>> ys = model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 3, 1]))  # (B, T, d)
        >>> ys.shape
        (4, 10, 16)
"""


class RNN(_Layer):
    __doc__ = _DOC.format(
        title="Vanilla RNN", kind="rnn", cls="RNN", options="activation='tanh', dtype=float32"
    )
    kind = "rnn"


class LSTM(_Layer):
    __doc__ = _DOC.format(
        title="LSTM", kind="lstm", cls="LSTM", options="forget_bias=1.0, dtype=float32"
    )
    kind = "lstm"


class GRU(_Layer):
    __doc__ = _DOC.format(
        title="GRU", kind="gru", cls="GRU", options="reset_after=False, dtype=float32"
    )
    kind = "gru"
