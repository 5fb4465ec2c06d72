"""Linen sequence layers: deep, bidirectional stacks of any cell over batch-major sequences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import linen as nn
from flax.core import FrozenDict

from jaxrnn import _checks
from jaxrnn._batch_major import check_inputs, check_layer_options, run_layers, training_rates
from jaxrnn._cell import get_cell
from jaxrnn._stack import stack_init
from jaxrnn.linen._cells import cell_options, with_option_fields


class Recurrent(nn.Module):
    """A stack of any :class:`jaxrnn.Cell`: ``num_layers`` layers, optionally bidirectional.

    A thin holder of the functional ``layers`` (the ``params/layers`` variable):
    the call is :func:`jaxrnn.stack_scan` on batch-major inputs.

    Attributes:
        hidden_features: ``h`` per direction.
        cell: a registered name (``"lstm"``) or a :class:`jaxrnn.Cell`.
        cell_options: options for the cell's ``init``.
        num_layers, bidirectional, dropout, recurrent_dropout, zoneout: as in
            :func:`jaxrnn.stack_init` and :func:`jaxrnn.stack_scan`.
        time_major: inputs ``(T, *batch, d)`` instead of ``(*batch, T, d)``.
        deterministic: disables dropout and makes zoneout its expectation (the
            call's argument overrides it).
        unroll, remat: passed to :func:`jaxrnn.scan` for every layer.
        dtype: the compute dtype of :func:`jaxrnn.stack_scan`, Flax's meaning
            (``None``: the params'; bfloat16 keeps the carry in float32).
        param_dtype: the dtype of the params it initialises.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxrnn
        >>> model = jaxrnn.linen.Recurrent(8, cell="gru", num_layers=2, bidirectional=True)
        >>> x = jnp.ones((4, 10, 3))  # (B, T, d)
        >>> variables = model.init(jax.random.key(0), x)
        >>> model.apply(variables, x, lengths=jnp.array([10, 7, 3, 1])).shape
        (4, 10, 16)
    """

    hidden_features: int
    cell: Any = "lstm"
    cell_options: Mapping[str, Any] = FrozenDict()
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0
    time_major: bool = False
    deterministic: bool | None = None
    unroll: int | bool = 1
    remat: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        inputs,
        *,
        lengths=None,
        resets=None,
        carry=None,
        return_carry=False,
        deterministic=None,
    ):
        """Runs the stack.

        Args:
            inputs: ``(*batch, T, d)``, or ``(T, *batch, d)`` with ``time_major=True``.
            lengths: optional integer array of shape ``batch``.
            resets: optional bool array shaped like ``inputs`` without its last
                axis (for a ConvLSTM, without its spatial axes either), marking where
                a new episode starts (see :func:`jaxrnn.stack_scan`).
            carry: optional initial state, nested like the ``layers`` parameter.
            return_carry: also return the final state of every layer and direction.
            deterministic: disables dropout (and makes zoneout its expectation);
                overrides the attribute of the same name. One of the two must be set
                when the layer has dropout or zoneout. In training mode both draw
                from the ``'dropout'`` RNG stream.

        Returns:
            ``ys`` of shape ``(*batch, T, h * directions)`` (``h`` is the LSTM's
            ``proj_size`` where it has one; zero past each length),
            or ``(carry, ys)`` with ``return_carry=True``.
        """
        cell = get_cell(self.cell)
        check_layer_options(cell, self.dropout, self.recurrent_dropout, self.zoneout)
        options = cell_options(self)
        if self.has_variable("params", "layers"):  # say "inputs", before Flax's shape check
            check_inputs(cell, self.get_variable("params", "layers"), inputs)
        layers = self.param(
            "layers",
            lambda key: stack_init(
                key,
                cell,
                jnp.shape(inputs)[-1],
                self.hidden_features,
                num_layers=self.num_layers,
                bidirectional=self.bidirectional,
                **options,
            ),
        )
        key = None
        stochastic = self.dropout > 0 or self.recurrent_dropout > 0 or self.zoneout > 0
        if stochastic and not nn.merge_param("deterministic", self.deterministic, deterministic):
            if not self.has_rng("dropout"):
                rates = training_rates(self.dropout, self.recurrent_dropout, self.zoneout)
                raise ValueError(
                    f"rngs: {rates} "
                    "with deterministic=False need a 'dropout' RNG, as in "
                    "apply(variables, x, rngs={'dropout': key}); none was given"
                )
            key = self.make_rng("dropout")
        return run_layers(
            cell,
            layers,
            inputs,
            time_major=_checks.boolean(self.time_major, "time_major"),
            lengths=lengths,
            resets=resets,
            carry=carry,
            return_carry=return_carry,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            zoneout=self.zoneout,
            key=key,
            unroll=self.unroll,
            remat=self.remat,
            dtype=self.dtype,
        )

    @staticmethod
    def to_layers(variables):
        """The functional ``layers`` inside ``variables`` (as returned by ``init``)."""
        return variables["params"]["layers"]

    @staticmethod
    def variables_from_layers(layers):
        """``variables`` for ``apply`` that hold ``layers`` (e.g. converted from PyTorch)."""
        return {"params": {"layers": layers}}


_DOC = """{title} layer: :class:`Recurrent` with ``cell={kind!r}``.

    Fields: those of :class:`Recurrent`, and the options of
    :func:`jaxrnn.{kind}_init` with their defaults; the cell computes
    :func:`jaxrnn.{kind}_step`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxrnn
        >>> model = jaxrnn.linen.{cls}(8, bidirectional=True, deterministic=True)
        >>> x = jnp.ones((4, 10, 3))  # (B, T, d)
        >>> variables = model.init(jax.random.key(0), x)
        >>> model.apply(variables, x, lengths=jnp.array([10, 7, 3, 1])).shape
        (4, 10, 16)
"""

RNN = with_option_fields(
    Recurrent, "RNN", "rnn", _DOC.format(title="Vanilla RNN", kind="rnn", cls="RNN")
)
LSTM = with_option_fields(
    Recurrent, "LSTM", "lstm", _DOC.format(title="LSTM", kind="lstm", cls="LSTM")
)
GRU = with_option_fields(Recurrent, "GRU", "gru", _DOC.format(title="GRU", kind="gru", cls="GRU"))
