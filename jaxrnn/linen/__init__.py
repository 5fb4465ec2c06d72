"""Flax Linen modules: thin holders of jaxrnn params that call the functional core.

``jaxrnn.linen`` loads on first access, so a plain ``import jaxrnn`` does not import Flax.
Parameters live under ``params/cell`` (cells) or ``params/layers`` (sequence layers)
as the functional pytrees themselves.
"""

from jaxrnn.linen._cells import GRUCell as GRUCell
from jaxrnn.linen._cells import LSTMCell as LSTMCell
from jaxrnn.linen._cells import RecurrentCell as RecurrentCell
from jaxrnn.linen._cells import RNNCell as RNNCell
from jaxrnn.linen._layers import GRU as GRU
from jaxrnn.linen._layers import LSTM as LSTM
from jaxrnn.linen._layers import RNN as RNN
from jaxrnn.linen._layers import Recurrent as Recurrent
