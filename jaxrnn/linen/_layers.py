"""Linen sequence layers: deep, bidirectional stacks over batch-major sequences."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from jaxrnn import _checks
from jaxrnn._layer import CELLS, check_rates, run_layers
from jaxrnn._stack import stack_init


class _Layer(nn.Module):
    hidden_features: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    dtype: Any = jnp.float32
    time_major: bool = False
    deterministic: bool | None = None
    kind = ""

    def _options(self) -> dict:
        return {}

    @nn.compact
    def __call__(self, inputs, *, lengths=None, carry=None, return_carry=False, deterministic=None):
        """Runs the stack.

        Args:
            inputs: ``(*batch, T, d)``, or ``(T, *batch, d)`` with ``time_major=True``.
            lengths: optional integer array of shape ``batch``.
            carry: optional initial state, nested like the ``layers`` parameter.
            return_carry: also return the final state of every layer and direction.
            deterministic: disables dropout; overrides the attribute of the same name.
                One of the two must be set when the layer has dropout. In training
                mode dropout draws from the ``'dropout'`` RNG stream.

        Returns:
            ``ys`` of shape ``(*batch, T, h * directions)`` (zero past each length),
            or ``(carry, ys)`` with ``return_carry=True``.
        """
        check_rates(self.dropout, self.recurrent_dropout)
        init, step = CELLS[self.kind]
        if self.has_variable("params", "layers"):  # say "inputs", before Flax's shape check
            existing = self.get_variable("params", "layers")[0][0].input_size
            _checks.check_features(_checks.as_floating(inputs, "inputs"), existing, "inputs")
        layers = self.param(
            "layers",
            lambda key: stack_init(
                key,
                init,
                jnp.shape(inputs)[-1],
                self.hidden_features,
                num_layers=self.num_layers,
                bidirectional=self.bidirectional,
                dtype=self.dtype,
                **self._options(),
            ),
        )
        key = None
        if (self.dropout > 0 or self.recurrent_dropout > 0) and not nn.merge_param(
            "deterministic", self.deterministic, deterministic
        ):
            if not self.has_rng("dropout"):
                raise ValueError(
                    f"rngs: dropout={self.dropout} and recurrent_dropout={self.recurrent_dropout} "
                    "with deterministic=False need a 'dropout' RNG, as in "
                    "apply(variables, x, rngs={'dropout': key}); none was given"
                )
            key = self.make_rng("dropout")
        return run_layers(
            step,
            layers,
            inputs,
            time_major=self.time_major,
            lengths=lengths,
            carry=carry,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            key=key,
            return_carry=return_carry,
        )

    @staticmethod
    def to_layers(variables):
        """The functional ``layers`` inside ``variables`` (as returned by ``init``)."""
        return variables["params"]["layers"]

    @staticmethod
    def variables_from_layers(layers):
        """``variables`` for ``apply`` that hold ``layers`` (e.g. converted from PyTorch)."""
        return {"params": {"layers": layers}}


_DOC = """{title} layer: ``num_layers`` stacked, optionally bidirectional.

    The cell computes :func:`jaxrnn.{kind}_step`.
    A thin holder of the functional ``layers`` (the ``params/layers`` variable):
    the call is :func:`jaxrnn.stack_scan` on batch-major inputs.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxrnn
        >>> model = jaxrnn.linen.{cls}(8, num_layers=2, bidirectional=True, deterministic=True)
        >>> x = jnp.ones((4, 10, 3))  # (B, T, d)
        >>> variables = model.init(jax.random.key(0), x)
        >>> model.apply(variables, x, lengths=jnp.array([10, 7, 3, 1])).shape
        (4, 10, 16)
"""


class RNN(_Layer):
    __doc__ = _DOC.format(title="Vanilla RNN", kind="rnn", cls="RNN")
    activation: str = "tanh"
    kind = "rnn"

    def _options(self):
        return {"activation": self.activation}


class LSTM(_Layer):
    __doc__ = _DOC.format(title="LSTM", kind="lstm", cls="LSTM")
    forget_bias: float = 1.0
    kind = "lstm"

    def _options(self):
        return {"forget_bias": self.forget_bias}


class GRU(_Layer):
    __doc__ = _DOC.format(title="GRU", kind="gru", cls="GRU")
    reset_after: bool = False
    kind = "gru"

    def _options(self):
        return {"reset_after": self.reset_after}
