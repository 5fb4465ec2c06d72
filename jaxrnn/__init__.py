"""jaxrnn: recurrent cells as pure JAX functions.

Dimension letters used throughout: ``T`` time, ``B`` (or ``*batch``) batch axes,
``d`` input features, ``h`` hidden units. Sequences are time-major,
``xs (T, *batch, d)``; one step's input is ``x (*batch, d)``. Weights multiply
on the right (``x @ w_x``), gates are fused along the last axis.

A step is ``step(params, carry, x) -> (carry, y)``, ready for ``jax.lax.scan``.
A :class:`Cell` bundles a step with its ``init``, zero carry and scan rule;
registered by name (:func:`register_cell`), it works in stacks, both module
families and the examples.

The package's floors: the cells (``jaxrnn.cells``, one module per family), the
scan rules they register (``jaxrnn.rules``), the core at this level (the
registry, carries, ``scan``, stacks, masking and checks), the Flax faces
(``jaxrnn.nnx``, ``jaxrnn.linen``), conversion (``jaxrnn.interop``) and the
training machinery of the examples (``jaxrnn.train``).
"""

from jaxrnn import cells as cells
from jaxrnn import interop as interop
from jaxrnn import rules as rules
from jaxrnn._carry import LSTMState as LSTMState
from jaxrnn._carry import initial_carry as initial_carry
from jaxrnn._cell import Cell as Cell
from jaxrnn._cell import cell_names as cell_names
from jaxrnn._cell import get_cell as get_cell
from jaxrnn._cell import register_cell as register_cell
from jaxrnn._diagnostics import hidden_grad_norms as hidden_grad_norms
from jaxrnn._layer_norm import LayerNormParams as LayerNormParams
from jaxrnn._precision import with_precision as with_precision
from jaxrnn._scan import scan as scan
from jaxrnn._stack import stack_init as stack_init
from jaxrnn._stack import stack_scan as stack_scan
from jaxrnn._stack import stack_step as stack_step
from jaxrnn.cells import ConvLSTMParams as ConvLSTMParams
from jaxrnn.cells import GRUParams as GRUParams
from jaxrnn.cells import HawkParams as HawkParams
from jaxrnn.cells import HawkState as HawkState
from jaxrnn.cells import LRUParams as LRUParams
from jaxrnn.cells import LSTMParams as LSTMParams
from jaxrnn.cells import MGUParams as MGUParams
from jaxrnn.cells import MinGRUParams as MinGRUParams
from jaxrnn.cells import MinLSTMParams as MinLSTMParams
from jaxrnn.cells import MLSTMParams as MLSTMParams
from jaxrnn.cells import MLSTMState as MLSTMState
from jaxrnn.cells import RGLRUParams as RGLRUParams
from jaxrnn.cells import RNNParams as RNNParams
from jaxrnn.cells import S6Params as S6Params
from jaxrnn.cells import SLSTMParams as SLSTMParams
from jaxrnn.cells import SLSTMState as SLSTMState
from jaxrnn.cells import conv_lstm_init as conv_lstm_init
from jaxrnn.cells import conv_lstm_step as conv_lstm_step
from jaxrnn.cells import gru_init as gru_init
from jaxrnn.cells import gru_step as gru_step
from jaxrnn.cells import hawk_init as hawk_init
from jaxrnn.cells import hawk_step as hawk_step
from jaxrnn.cells import lru_init as lru_init
from jaxrnn.cells import lru_step as lru_step
from jaxrnn.cells import lstm_init as lstm_init
from jaxrnn.cells import lstm_step as lstm_step
from jaxrnn.cells import mgu_init as mgu_init
from jaxrnn.cells import mgu_step as mgu_step
from jaxrnn.cells import mingru_init as mingru_init
from jaxrnn.cells import mingru_step as mingru_step
from jaxrnn.cells import minlstm_init as minlstm_init
from jaxrnn.cells import minlstm_step as minlstm_step
from jaxrnn.cells import mlstm_init as mlstm_init
from jaxrnn.cells import mlstm_step as mlstm_step
from jaxrnn.cells import rglru_init as rglru_init
from jaxrnn.cells import rglru_step as rglru_step
from jaxrnn.cells import rnn_init as rnn_init
from jaxrnn.cells import rnn_step as rnn_step
from jaxrnn.cells import s6_init as s6_init
from jaxrnn.cells import s6_step as s6_step
from jaxrnn.cells import slstm_init as slstm_init
from jaxrnn.cells import slstm_step as slstm_step
from jaxrnn.rules import FusedGradient as FusedGradient
from jaxrnn.rules import LinearRecurrence as LinearRecurrence
from jaxrnn.rules import ScanRule as ScanRule

__version__ = "0.1.0"

# Subpackages that need Flax (and their own dependencies), and the checks for a cell of
# your own, load on first access, so that `import jaxrnn` stays light.
_LAZY = ("nnx", "linen", "train", "testing")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"jaxrnn.{name}")
    raise AttributeError(f"module 'jaxrnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
