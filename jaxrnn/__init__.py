"""jaxrnn: recurrent cells as pure JAX functions.

Dimension letters used throughout: ``T`` time, ``B`` (or ``*batch``) batch axes,
``d`` input features, ``h`` hidden units. Sequences are time-major,
``xs (T, *batch, d)``; one step's input is ``x (*batch, d)``. Weights multiply
on the right (``x @ w_x``), gates are fused along the last axis.

A step is ``step(params, carry, x) -> (carry, y)``, ready for ``jax.lax.scan``.
A :class:`Cell` bundles a step with its ``init`` and zero carry; registered by
name (:func:`register_cell`), it works in stacks, both module families and the
examples.
"""

from jaxrnn import interop as interop
from jaxrnn._carry import initial_carry as initial_carry
from jaxrnn._cell import Cell as Cell
from jaxrnn._cell import cell_names as cell_names
from jaxrnn._cell import get_cell as get_cell
from jaxrnn._cell import register_cell as register_cell
from jaxrnn._conv_lstm import ConvLSTMParams as ConvLSTMParams
from jaxrnn._conv_lstm import conv_lstm_init as conv_lstm_init
from jaxrnn._conv_lstm import conv_lstm_step as conv_lstm_step
from jaxrnn._diagnostics import hidden_grad_norms as hidden_grad_norms
from jaxrnn._fused import FusedGradient as FusedGradient
from jaxrnn._gru import GRUParams as GRUParams
from jaxrnn._gru import gru_init as gru_init
from jaxrnn._gru import gru_step as gru_step
from jaxrnn._layer_norm import LayerNormParams as LayerNormParams
from jaxrnn._linear_scan import LinearRecurrence as LinearRecurrence
from jaxrnn._lstm import LSTMParams as LSTMParams
from jaxrnn._lstm import LSTMState as LSTMState
from jaxrnn._lstm import lstm_init as lstm_init
from jaxrnn._lstm import lstm_step as lstm_step
from jaxrnn._mgu import MGUParams as MGUParams
from jaxrnn._mgu import mgu_init as mgu_init
from jaxrnn._mgu import mgu_step as mgu_step
from jaxrnn._mingru import MinGRUParams as MinGRUParams
from jaxrnn._mingru import mingru_init as mingru_init
from jaxrnn._mingru import mingru_step as mingru_step
from jaxrnn._minlstm import MinLSTMParams as MinLSTMParams
from jaxrnn._minlstm import minlstm_init as minlstm_init
from jaxrnn._minlstm import minlstm_step as minlstm_step
from jaxrnn._rnn import RNNParams as RNNParams
from jaxrnn._rnn import rnn_init as rnn_init
from jaxrnn._rnn import rnn_step as rnn_step
from jaxrnn._scan import scan as scan
from jaxrnn._stack import stack_init as stack_init
from jaxrnn._stack import stack_scan as stack_scan
from jaxrnn._stack import stack_step as stack_step

__version__ = "0.1.0"

# Subpackages that need Flax (and their own dependencies) load on first access,
# so that `import jaxrnn` stays light.
_LAZY = ("nnx", "linen", "train")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"jaxrnn.{name}")
    raise AttributeError(f"module 'jaxrnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
